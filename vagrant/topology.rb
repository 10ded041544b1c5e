# frozen_string_literal: true

# Shoal's lab topology (topology.conf) for the Vagrantfile: the same rules as the
# namespace lab's parser (tests/lab/lab), so both labs get the same addresses and labels.
#
#   ShoalTopology.load(path).hosts(nodes)
#   # => [{name: "sched", ip: "192.168.56.10", labels: {}},
#   #     {name: "node1", ip: "192.168.56.11", labels: {"zone" => "a"}}, ...]
#   ShoalTopology.load(path).hosts(nodes, 3)
#   # => [{name: "sched1", ...}, {name: "sched2", ...}, {name: "sched3", ...}, node1, ...]
#
# Nodes beyond those listed follow the file's pattern: nodeI has the network's address
# .(10+I) and zone a for odd I, b for even I.
require "ipaddr"

class ShoalTopology
  class Error < StandardError; end

  HOST_RE = /\A(sched[1-9]?|node[1-9][0-9]{0,2})\z/.freeze
  IPV4_RE = /\A(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\z/.freeze

  attr_reader :network, :cluster_cidr

  def self.load(path)
    new(File.read(path), path)
  end

  def initialize(text, path = "topology.conf")
    @path = path
    @hosts = {}
    text.each_line.with_index(1) { |line, n| parse_line(line, n) }
    raise Error, "#{path}: no 'network' line" unless @network
    raise Error, "#{path}: no 'cluster_cidr' line" unless @cluster_cidr
    raise Error, "#{path}: no 'sched' line" unless @hosts["sched"]
  end

  # The scheduler hosts (sched, or sched1..schedN for schedulers > 1) and nodes 1..nodes,
  # each {name:, ip:, labels:}.
  def hosts(nodes, schedulers = 1)
    raise Error, "NODES must be at least 1, got #{nodes}" if nodes < 1

    list = sched_names(schedulers) + (1..nodes).map { |i| "node#{i}" }
    result = list.map { |h| { name: h, ip: address(h), labels: labels(h) } }
    dup = result.group_by { |h| h[:ip] }.find { |_, v| v.size > 1 }
    raise Error, "#{@path}: address #{dup[0]} appears twice" if dup

    result
  end

  def sched_names(schedulers)
    raise Error, "SCHEDULERS must be 1 to 9, got #{schedulers}" unless (1..9).cover?(schedulers)
    return ["sched"] if schedulers == 1

    (1..schedulers).map { |i| "sched#{i}" }
  end

  def address(host)
    return @hosts[host][:ip] if @hosts[host]
    raise Error, "#{@path}: no address for '#{host}'" unless host.start_with?("node")

    last = 10 + host.delete_prefix("node").to_i
    raise Error, "#{host}: no address left in #{@network} for the pattern .(10+I)" if last > 254

    ip = @network.split("/")[0].split(".")[0, 3].push(last.to_s).join(".")
    unless IPAddr.new(@network).include?(IPAddr.new(ip))
      raise Error, "#{host}: #{ip} is outside #{@network}"
    end

    ip
  end

  # The labels listed for host; a node without a zone gets the pattern's.
  def labels(host)
    listed = @hosts[host] ? @hosts[host][:labels] : {}
    return listed unless host.start_with?("node") && !listed.key?("zone")

    listed.merge("zone" => host.delete_prefix("node").to_i.odd? ? "a" : "b")
  end

  private

  def parse_line(line, num)
    key, val, *rest = line.split
    return if key.nil? || key.start_with?("#")

    where = "#{@path}:#{num}"
    case key
    when "network", "cluster_cidr"
      raise Error, "#{where}: #{key}: not a CIDR: '#{val}'" unless cidr?(val)

      instance_variable_set("@#{key}", val)
    when HOST_RE
      raise Error, "#{where}: #{key}: not an address: '#{val}'" unless ipv4?(val)

      @hosts[key] = { ip: val, labels: parse_labels(rest, where) }
    else
      raise Error, "#{where}: unknown key '#{key}'"
    end
  end

  def parse_labels(words, where)
    words.each_with_object({}) do |kv, h|
      k, v = kv.split("=", 2)
      raise Error, "#{where}: expected key=value, got '#{kv}'" if k.to_s.empty? || v.to_s.empty?

      h[k] = v
    end
  end

  def ipv4?(s)
    m = IPV4_RE.match(s.to_s)
    m && m.captures.all? { |o| o.to_i <= 255 }
  end

  def cidr?(s)
    ip, len = s.to_s.split("/", 2)
    ipv4?(ip) && len.to_s.match?(/\A\d{1,2}\z/) && len.to_i <= 32
  end
end
