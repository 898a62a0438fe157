#include "wb_error.h"

const char *wb_strerror(int code)
{
	switch (code) {
#define WB_ERROR_TEXT(name, value, text)                                                           \
	case value:                                                                                \
		return text;
		WB_ERRORS(WB_ERROR_TEXT)
#undef WB_ERROR_TEXT
	}
	return "unknown error";
}

const char *wb_error_name(int code)
{
	switch (code) {
#define WB_ERROR_NAME(name, value, text)                                                           \
	case value:                                                                                \
		return #name;
		WB_ERRORS(WB_ERROR_NAME)
#undef WB_ERROR_NAME
	}
	return "UNKNOWN";
}

int wb_error_to_wire(int code)
{
	switch (code) {
#define WB_ERROR_WIRE(name, value, text)                                                           \
	case value:                                                                                \
		if (value <= WB_WIRE_MAX)                                                          \
			return value;                                                              \
		break;
		WB_ERRORS(WB_ERROR_WIRE)
#undef WB_ERROR_WIRE
	}
	switch (code) {
	case WB_E_NOTFOUND:
		return WB_NOT_FOUND;
	case WB_E_MAPFULL:
	case WB_E_NOMEM:
	case WB_E_NOSPC:
		return WB_RESOURCE_EXHAUSTED;
	default:
		return WB_INTERNAL;
	}
}
