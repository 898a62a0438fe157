/* Minimal requests for the rules of the access table (server/access.h),
 * for the permission matrices over the wire (test_access_e2e,
 * test_grants_e2e): one request per table entry, built from the protobuf
 * descriptors so that a body the protocol gains is covered without a list
 * kept here. A request built this way is meant to reach the access check;
 * its handler may well refuse it for another reason (NOT_FOUND,
 * BAD_REQUEST), which is not what the matrices look at. */
#ifndef WB_TESTS_ACCESS_REQUESTS_H
#define WB_TESTS_ACCESS_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

#include "access.h"
#include "whizbang.pb-c.h"

struct access_request {
	Whizbang__V1__Request req;
	/* The messages req points at, freed by access_request_free(). */
	ProtobufCMessage *parts[4];
	size_t nparts;
};

/* Fills ar with a minimal request for rule r, id 0: its body message with
 * defaults and the rule's resource named name, which ar points at (the
 * caller keeps it alive):
 * - ACCESS_FIELD: name in the rule's field;
 * - CreateConsumer: a config whose group is name;
 * - ACCESS_BY_LEASE: with seq non-zero, the lease's sequence seq and a
 *   token no lease holds (UINT64_MAX), so the request can never act on the
 *   lease; with seq 0 both stay 0.
 * With source non-NULL, Subscribe and CreateConsumer read the stream source
 * (TARGET_STREAM); otherwise they read $all whole. Hello says protocol 1,
 * WaitForWatermark waits 1 ms, Backup names a path that cannot exist.
 * Fails the running test when r's body is not a message of Request. */
void access_request_make(struct access_request *ar, const struct srv_access_rule *r,
                         const char *name, const char *source, uint64_t seq);

/* Frees what access_request_make() allocated; ar may be made again. */
void access_request_free(struct access_request *ar);

#endif
