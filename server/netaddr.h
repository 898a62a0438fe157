/* Listen addresses and port files, for the listener and the metrics
 * endpoint alike. */
#ifndef WB_NETADDR_H
#define WB_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

/* Parses "HOST:PORT" (IPv4, [IPv6], or localhost) given for the option
 * named option into *ss. 0, or -1 with a sentence naming the option in
 * errmsg. */
int netaddr_parse(const char *option, const char *text, struct sockaddr_storage *ss, char *errmsg,
                  size_t errlen);

/* Whether ss is a loopback address: 127.0.0.0/8, ::1, or ::ffff:127.x. */
bool netaddr_is_loopback(const struct sockaddr_storage *ss);

/* Writes the local address of tcp as "host:port" ("[host]:port" for IPv6)
 * into name and returns the port; "" and 0 when it has none. */
int netaddr_local(const uv_tcp_t *tcp, char *name, size_t namelen);

/* Writes port (decimal, newline) to path atomically (a temporary file,
 * then rename). 0, or -1 with the reason in errmsg. */
int netaddr_write_port_file(const char *path, int port, char *errmsg, size_t errlen);

#endif
