/* Minimal requests for the access table's rules (access_requests.h). */
#include "access_requests.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

/* Sets the 64-bit field named field of msg to v (the lease requests'
 * sequence and token). Fields go through memcpy: their offsets are not known
 * to be aligned to the compiler. */
static void set_u64(ProtobufCMessage *msg, const char *field, uint64_t v)
{
	const ProtobufCFieldDescriptor *f =
	        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, field);
	cr_assert_not_null(f, "%s has no field %s", msg->descriptor->name, field);
	cr_assert(f->type == PROTOBUF_C_TYPE_UINT64 || f->type == PROTOBUF_C_TYPE_FIXED64,
	          "%s.%s is not a 64-bit integer", msg->descriptor->name, field);
	memcpy((char *)msg + f->offset, &v, sizeof(v));
}

void access_request_make(struct access_request *ar, const struct srv_access_rule *r,
                         const char *name, const char *source, uint64_t seq)
{
	memset(ar, 0, sizeof(*ar));
	Whizbang__V1__Request *req = &ar->req;
	whizbang__v1__request__init(req);
	const ProtobufCFieldDescriptor *bf = protobuf_c_message_descriptor_get_field(
	        &whizbang__v1__request__descriptor, (unsigned)r->body);
	cr_assert_not_null(bf, "body %u is no field of Request", (unsigned)r->body);
	const ProtobufCMessageDescriptor *md = bf->descriptor;
	ProtobufCMessage *body = calloc(1, md->sizeof_message);
	cr_assert_not_null(body);
	protobuf_c_message_init(md, body);
	ar->parts[ar->nparts++] = body;
	req->body_case = r->body;
	memcpy((char *)req + bf->offset, &body, sizeof(body));
	if (r->name == ACCESS_FIELD) {
		const ProtobufCFieldDescriptor *f =
		        protobuf_c_message_descriptor_get_field_by_name(md, r->field);
		cr_assert_not_null(f, "%s has no field %s", md->name, r->field);
		memcpy((char *)body + f->offset, &name, sizeof(name));
	}
	if (r->name == ACCESS_BY_LEASE && seq != 0) {
		set_u64(body, "sequence", seq);
		set_u64(body, "token", UINT64_MAX);
	}
	switch (r->body) {
	case WHIZBANG__V1__REQUEST__BODY_HELLO:
		req->hello->protocol_version = 1;
		break;
	case WHIZBANG__V1__REQUEST__BODY_WAIT_FOR_WATERMARK:
		req->wait_for_watermark->timeout_ms = 1;
		break;
	case WHIZBANG__V1__REQUEST__BODY_SUBSCRIBE:
		if (source != NULL) {
			req->subscribe->target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM;
			req->subscribe->stream = (char *)source;
		}
		break;
	case WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER: {
		Whizbang__V1__ConsumerConfig *cfg = calloc(1, sizeof(*cfg));
		cr_assert_not_null(cfg);
		whizbang__v1__consumer_config__init(cfg);
		cfg->name = (char *)name;
		if (source != NULL) {
			cfg->target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM;
			cfg->stream = (char *)source;
		}
		ar->parts[ar->nparts++] = &cfg->base;
		req->create_consumer->config = cfg;
		break;
	}
	case WHIZBANG__V1__REQUEST__BODY_BACKUP:
		req->backup->path = "/nonexistent/acl-backup";
		break;
	default:
		break;
	}
}

void access_request_free(struct access_request *ar)
{
	for (size_t k = 0; k < ar->nparts; k++)
		free(ar->parts[k]);
	ar->nparts = 0;
}
