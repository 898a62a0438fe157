#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int netaddr_parse(const char *option, const char *text, struct sockaddr_storage *ss, char *errmsg,
                  size_t errlen)
{
	char host[256];
	const char *colon = strrchr(text, ':');
	if (colon == NULL || colon == text || colon[1] == '\0') {
		snprintf(errmsg, errlen, "--%s '%s' is not HOST:PORT", option, text);
		return -1;
	}
	size_t hlen = (size_t)(colon - text);
	if (text[0] == '[' && hlen >= 2 && text[hlen - 1] == ']') {
		memcpy(host, text + 1, hlen - 2);
		host[hlen - 2] = '\0';
	} else {
		if (hlen >= sizeof(host))
			hlen = sizeof(host) - 1;
		memcpy(host, text, hlen);
		host[hlen] = '\0';
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 0 || port > 65535) {
		snprintf(errmsg, errlen, "--%s '%s': the port must be 0..65535", option, text);
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	if (strcmp(host, "localhost") == 0 &&
	    uv_ip4_addr("127.0.0.1", (int)port, (struct sockaddr_in *)ss) == 0)
		return 0;
	snprintf(errmsg, errlen, "--%s '%s': '%s' is not an IPv4 or IPv6 address", option, text,
	         host);
	return -1;
}

int netaddr_local(const uv_tcp_t *tcp, char *name, size_t namelen)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char host[64] = "";
	name[0] = '\0';
	if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET6) {
		int port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
		snprintf(name, namelen, "[%s]:%d", host, port);
		return port;
	}
	if (ss.ss_family == AF_INET) {
		int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
		snprintf(name, namelen, "%s:%d", host, port);
		return port;
	}
	return 0;
}

int netaddr_write_port_file(const char *path, int port, char *errmsg, size_t errlen)
{
	char tmp[1100];
	char text[16];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int n = snprintf(text, sizeof(text), "%d\n", port);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) != 0 || rename(tmp, path) != 0) {
		snprintf(errmsg, errlen, "cannot write the port file '%s': %s", path,
		         strerror(errno));
		if (fd >= 0)
			unlink(tmp);
		return -1;
	}
	return 0;
}

bool netaddr_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a6 =
		        &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a6) ||
		       (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
	}
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)ss)->sin_addr.s_addr) >>
		        24) == 127;
	return false;
}
