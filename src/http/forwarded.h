/* forwarded.h: the client behind a trusted proxy (--trusted-proxy). A balancer in front of sasp-server
 * (deploy/haproxy.cfg) makes every request come from its own address, so the guard's per-client limits
 * (guard.h) would treat all its clients as one. When the TCP peer is a trusted proxy, the client is the
 * right-most address of X-Forwarded-For (every such header, in order) that is not itself a trusted
 * proxy; a peer that is not trusted is the client whatever headers it sends. */
#ifndef SASP_HTTP_FORWARDED_H
#define SASP_HTTP_FORWARDED_H

#include <microhttpd.h>
#include <sys/socket.h>

#define FORWARDED_MAX_PROXIES 32

/* The trusted proxies: IPv4 or IPv6 addresses, each optionally /BITS (a network). 0, or -1 after
 * saying which one is not an address. */
int forwarded_init(const char *const *proxies, int n);
/* 16 bytes naming an address (IPv4 as IPv4-mapped IPv6, so both spellings are one client; zeros for
 * NULL or another family). */
void forwarded_addr_bytes(const struct sockaddr *sa, unsigned char out[16]);
/* Whether sa is a trusted proxy. */
int forwarded_trusted(const struct sockaddr *sa);
/* The client of connection c (whose TCP peer is peer) as 16 bytes: the peer, or when the peer is a
 * trusted proxy the address X-Forwarded-For names (the peer when it names none that parses). */
void forwarded_client(struct MHD_Connection *c, const struct sockaddr *peer, unsigned char out[16]);

#endif
