/* ListClients and Disconnect: the server's connections for an operator
 * (admin:clients).
 *
 * ListClients walks the open connections: the connection layer's figures
 * (conn_info()), every module's (srv_conn_figures(): subscriptions, leases,
 * consumer memberships, the user) and the roles the connection acts with
 * now (its subject). The list is bounded by --max-connections. The
 * connection that asks is spared from the memory budget's disconnects
 * until it has read the answer (conn_spare()).
 *
 * Disconnect queues a last Error on the connection named (request id 0,
 * RESOURCE_EXHAUSTED, naming the connection that closed it) and closes it
 * once that is written; what it holds goes as on any close. A connection
 * may close itself this way (the answer then cannot reach it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "log.h"
#include "reply.h"
#include "server.h"
#include "wb_error.h"

typedef Whizbang__V1__Request Request;

struct clients {
	struct srv *srv;
};

struct list {
	struct srv *srv;
	struct conn *asker;
	Whizbang__V1__ClientInfo *infos;
	Whizbang__V1__ClientInfo **ptrs;
	char **roles; /* AUTH_ROLES_MAX per client */
	size_t n, cap;
};

static void add_client(void *arg, struct conn *c)
{
	struct list *l = arg;
	if (l->n == l->cap)
		return; /* opened since the count: the next list has it */
	Whizbang__V1__ClientInfo *info = &l->infos[l->n];
	whizbang__v1__client_info__init(info);
	struct conn_info ci;
	conn_info(c, &ci);
	info->id = ci.id;
	info->peer = (char *)ci.peer;
	info->client_name = (char *)ci.client_name;
	info->tls = ci.tls;
	info->unix_socket = ci.unix_socket;
	info->age_ms = ci.age_ms;
	info->idle_ms = ci.idle_ms;
	info->requests = ci.frames;
	info->bytes_in = ci.bytes_in;
	info->bytes_out = ci.bytes_out;
	info->input_buffer = ci.input_buffer;
	info->output_buffer = ci.output_buffer;
	info->in_flight = ci.in_flight;
	info->queued_reads = ci.queued_reads;
	info->writes = ci.writes;
	info->memory = ci.memory;
	info->self = c == l->asker;
	srv_conn_figures(l->srv, c, info);
	const struct auth_subject *s = conn_subject(c);
	char **roles = &l->roles[l->n * AUTH_ROLES_MAX];
	for (size_t i = 0; s != NULL && i < s->nroles && i < AUTH_ROLES_MAX; i++)
		roles[info->n_roles++] = (char *)s->roles[i]->name;
	info->roles = roles;
	l->ptrs[l->n] = info;
	l->n++;
}

static bool list_clients(void *state, struct conn *c, Request *req)
{
	struct clients *cs = state;
	struct conns *set = srv_conns(cs->srv);
	struct list l = {.srv = cs->srv, .asker = c, .cap = conns_open(set)};
	/* Who holds what is asked for when memory is short: the asker is not
	 * disconnected for the memory budget until it has read the answer. */
	conn_spare(c);
	l.infos = calloc(l.cap + 1, sizeof(*l.infos));
	l.ptrs = calloc(l.cap + 1, sizeof(*l.ptrs));
	l.roles = calloc((l.cap + 1) * AUTH_ROLES_MAX, sizeof(*l.roles));
	if (l.infos == NULL || l.ptrs == NULL || l.roles == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
	} else {
		conns_foreach(set, add_client, &l);
		Whizbang__V1__ClientList out = WHIZBANG__V1__CLIENT_LIST__INIT;
		out.n_clients = l.n;
		out.clients = l.ptrs;
		SRV_REPLY(c, req->id, CLIENTS, clients, &out);
	}
	free(l.infos);
	free(l.ptrs);
	free(l.roles);
	return false;
}

static bool disconnect(void *state, struct conn *c, Request *req)
{
	struct clients *cs = state;
	uint64_t id = req->disconnect->id;
	struct conn *victim = conns_find(srv_conns(cs->srv), id);
	if (victim == NULL) {
		srv_error(c, req->id, WB_NOT_FOUND, "no connection %llu is open",
		          (unsigned long long)id);
		return false;
	}
	srv_log(WB_LOG_INFO, "disconnected_by_admin", "conn=%llu peer=%s by=%llu",
	        (unsigned long long)id, conn_peer(victim), (unsigned long long)conn_id(c));
	if (victim != c) {
		Whizbang__V1__DisconnectResult r = WHIZBANG__V1__DISCONNECT_RESULT__INIT;
		SRV_REPLY(c, req->id, DISCONNECT, disconnect, &r);
	}
	srv_error(victim, 0, WB_RESOURCE_EXHAUSTED,
	          "an administrator closed this connection (Disconnect, from connection %llu)",
	          (unsigned long long)conn_id(c));
	conn_close_after_flush(victim);
	return false;
}

static int clients_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	struct clients *cs = state;
	(void)slot;
	(void)errmsg;
	(void)errlen;
	cs->srv = srv;
	return 0;
}

static const struct srv_handler clients_handlers[] = {
        {WHIZBANG__V1__REQUEST__BODY_LIST_CLIENTS, list_clients},
        {WHIZBANG__V1__REQUEST__BODY_DISCONNECT, disconnect},
};

const struct srv_module srv_clients_module = {
        .name = "clients",
        .size = sizeof(struct clients),
        .init = clients_init,
        .handlers = clients_handlers,
        .nhandlers = sizeof(clients_handlers) / sizeof(clients_handlers[0]),
};
