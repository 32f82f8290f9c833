/* Validation of keys and namespaces, shared by daemon and client: the one
 * check of the rule (HC_MAX_KEY, HC_MAX_NS in hicache_defs.h). */
#ifndef HC_KEY_H
#define HC_KEY_H

#include <stdbool.h>
#include <stddef.h>

#include "hicache_defs.h"

/* A key or namespace is 1..256 characters of [A-Za-z0-9_.-], and not "." or
 * "..". Returns NULL when s[0..len) is valid, else a static readable reason
 * ("key is empty", "key is longer than 256 characters", "key contains '/'",
 * "key contains a NUL byte", "key contains a space", "key contains '..'", ...).
 * what is "key" or "namespace" and begins the reason. */
const char *hc_name_invalid(const char *what, const char *s, size_t len);

/* True for the bytes a name may hold ([A-Za-z0-9_.-]); for code that maps
 * other text into a name (the host name into the default node id). */
bool hc_name_char(unsigned char c);

/* A node id or root directory name: the rule of keys, at most
 * HC_MAX_NODE characters (a directory on the shared volume). */
#define HC_MAX_NODE 64u
bool hc_node_name_ok(const char *s, size_t len);

#endif
