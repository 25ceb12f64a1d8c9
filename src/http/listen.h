/* listen.h: sasp-server's HTTP daemon (listen.c): libmicrohttpd with a few epoll threads for every
 * connection (an idle one costs memory, not a thread), the guard's accept policy and header deadline
 * (guard.h), the access handler that reads a request's body and hands it to route.c (or, when the
 * waiter resumed a suspended answer, to its conn's resume), and the log line of every request. */
#ifndef SASP_HTTP_LISTEN_H
#define SASP_HTTP_LISTEN_H

#include <microhttpd.h>
#include "http/route.h"

/* Listen on o->host and o->port for o->routes (the options are kept by pointer: they must outlive
 * the daemon), over TLS when o->tls_key_file and o->tls_cert_file are given (libmicrohttpd's GnuTLS);
 * *port is the port bound (o->port 0: the one picked), *ipv6 whether the address is IPv6. NULL after
 * saying why not (a key or certificate that cannot be read or used, a libmicrohttpd without TLS). */
struct MHD_Daemon *listen_start(const http_options *o, int *port, int *ipv6);

#endif
