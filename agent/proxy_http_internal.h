#ifndef SHOAL_AGENT_PROXY_HTTP_INTERNAL_H
#define SHOAL_AGENT_PROXY_HTTP_INTERNAL_H

/*
 * What the HTTP mode's two files share: proxy_http.c (the client connection: its requests,
 * error answers, timers and life) and proxy_http_backend.c (backend connections: connect,
 * reuse, retry, sending the request up and relaying the answer down). Not for use outside
 * them: everything else goes through proxy_http.h.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/event_struct.h>

#include "proxy_http_parse.h"
#include "proxy_pp.h"

struct proxy_http_config;
struct proxy_http_ops;

#define PH_IDLE_MAX     4 /* backend connections a client connection keeps between requests */
#define PH_MAX_ATTEMPTS 4 /* tries per request: the first and HAProxy's retries 3 */
/* A side whose bytes the other side has not taken past this stops being read. */
#define PH_HIGH      (256 * 1024)
#define PH_READ_SIZE (16 * 1024)
/* After an error answer the client gets this long to read it before the close. */
#define PH_LINGER_MS 1000

struct ph_buf {
	char *d;
	size_t off, len, cap;
};

struct ph_bconn {
	struct proxy_http_conn *c;
	void *be; /* a ref */
	int fd;
	struct event rd, wr;
	bool rd_on, wr_on;
	bool connecting;
	bool fresh; /* opened for this request: a failure is the backend's, not a stale reuse */
	char pp[PROXY_PP_MAX];
	size_t pp_len;
};

enum ph_state {
	PH_HEAD,    /* waiting for (the rest of) a request head */
	PH_REQ,     /* a request in flight */
	PH_TUNNEL,  /* after 101 Switching Protocols: raw bytes both ways */
	PH_CLOSING, /* the last bytes to the client, then close */
};

struct proxy_http_conn {
	struct event_base *base;
	const struct proxy_http_config *cfg;
	const struct proxy_http_ops *ops;
	void *owner;
	int fd;
	struct event crd, cwr, tmr;
	bool crd_on, cwr_on;
	bool dead;       /* over: the callback that set it hands it to ops->done */
	bool linger;     /* an error answer went out: wait for the client's close */
	bool first;      /* no request head yet: first_byte_ms applies */
	bool client_eof; /* the client half-closed: answer what it sent, then close */
	bool queued;     /* waiting in the service's queue for a slot (ops->wait) */
	char ip[INET6_ADDRSTRLEN];
	bool v6;
	struct sockaddr_storage src, dst;
	enum ph_state state;
	int64_t last_ms;
	struct ph_buf in; /* client bytes not handled yet (a head, body, pipelined requests) */
	size_t scan;
	struct ph_buf cout; /* bytes for the client its socket did not take yet */
	/* The request in flight. */
	struct proxy_http_msg req;
	void *be; /* pick's slot and ref */
	struct ph_bconn *b;
	struct ph_buf up; /* request bytes for the backend; [0, up_sent) sent */
	size_t up_sent;
	bool up_trimmed; /* up no longer starts at the request: no retry */
	bool req_done;   /* the whole request is in up */
	uint64_t body_left;
	struct proxy_http_chunk chunk;
	int attempts;
	void *avoid; /* a ref: the backend that just failed */
	bool resp_started;
	struct ph_buf rhead; /* the answer's head until it is complete */
	size_t rscan;
	bool rhead_done;
	struct proxy_http_msg resp;
	uint64_t rleft;
	struct proxy_http_chunk rchunk;
	bool reframed; /* the answer's head was rewritten for a keep-alive client */
	bool rechunk;  /* ... and its close-delimited body goes out chunked */
	uint64_t bytes_in, bytes_out;
	struct ph_bconn *idle[PH_IDLE_MAX];
	size_t nidle;
};

/* A read buffer of the loop's thread, for bytes relayed as they come. */
extern __thread char proxy_http_scratch[64 * 1024];

/* ---- proxy_http.c ---- */

void proxy_http_buf_reserve(struct ph_buf *b, size_t n);
void proxy_http_buf_append(struct ph_buf *b, const char *p, size_t n);
void proxy_http_buf_consume(struct ph_buf *b, size_t n);
void proxy_http_buf_free(struct ph_buf *b);
int64_t proxy_http_now_ms(void);
/* The connection's one timer, to fire in ms. */
void proxy_http_arm(struct proxy_http_conn *c, int64_t ms);
/* Add or delete ev so that *on == want. */
void proxy_http_ev(struct event *ev, bool *on, bool want);
/* Bytes for the client: sent now if its socket takes them, the rest kept (and the backend
 * not read while that is over PH_HIGH). */
void proxy_http_to_client(struct proxy_http_conn *c, const char *p, size_t n);
/* Answer status and close; only before any byte of an answer went out (else just close). */
void proxy_http_error(struct proxy_http_conn *c, int status);
/* The answer is complete; reusable: its backend connection may serve another request. */
void proxy_http_finish(struct proxy_http_conn *c, bool reusable);
/* Handle what the client sent: a new request head, or body bytes of the current one. */
void proxy_http_process(struct proxy_http_conn *c);

/* ---- proxy_http_backend.c ---- */

void proxy_http_backend_close(struct ph_bconn *b);
/* The request's slot goes back; the backend connection to the idle list when keep, else
 * closed. */
void proxy_http_backend_drop(struct proxy_http_conn *c, bool keep);
/* Open (or take from the idle list) a connection to given (a slot and a reference taken), or
 * else (given NULL) to the next backend, and send the request. */
void proxy_http_backend_start(struct proxy_http_conn *c, void *given);
/* Send what up holds to the backend; keep it for a retry until it exceeds
 * PROXY_HTTP_RETRY_MAX. */
void proxy_http_backend_flush(struct proxy_http_conn *c);
/* The current backend connection failed before any byte of the answer: try another backend
 * while the whole request is still here. connect: the connect itself failed. */
void proxy_http_backend_retry(struct proxy_http_conn *c, int code, bool connect);

#endif
