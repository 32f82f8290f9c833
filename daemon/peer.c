/* Peers: which users may use the daemon. Every connection's credentials
 * (SO_PEERCRED) are checked at accept against allowed_uids / allowed_gids
 * (root and the daemon's own user always may); a refused peer is told so at
 * its hello (hello.c).
 *
 * Threads: loop thread only (hc__parse_ids also runs at start and at a
 * reload, both on the loop thread). */
#include "server_int.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Parses "0,1000,alice" into ids. Returns 0 or -EINVAL naming the entry. */
int hc__parse_ids(const char *list, bool groups, unsigned *ids, unsigned *n, char *err,
                  size_t errlen)
{
    char *copy, *save = NULL, *tok;
    int rc = 0;

    *n = 0;
    if (!list || !*list)
        return 0;
    copy = strdup(list);
    if (!copy)
        return -ENOMEM;
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        unsigned long v;

        while (*tok == ' ')
            tok++;
        if (!*tok)
            continue;
        if (*n == MAX_IDS) {
            snprintf(err, errlen, "more than %d entries in allowed_%s", MAX_IDS,
                     groups ? "gids" : "uids");
            rc = -EINVAL;
            break;
        }
        errno = 0;
        v = strtoul(tok, &end, 10);
        if (*end == '\0' && errno == 0 && v <= UINT32_MAX) {
            ids[(*n)++] = (unsigned)v;
            continue;
        }
        if (groups) {
            struct group *g = getgrnam(tok);
            if (g) {
                ids[(*n)++] = g->gr_gid;
                continue;
            }
        } else {
            struct passwd *p = getpwnam(tok);
            if (p) {
                ids[(*n)++] = p->pw_uid;
                continue;
            }
        }
        snprintf(err, errlen, "allowed_%s: no such %s '%s'", groups ? "gids" : "uids",
                 groups ? "group" : "user", tok);
        rc = -EINVAL;
        break;
    }
    free(copy);
    return rc;
}

/* True when a peer of uid / gid may connect: no restriction configured,
 * root, the daemon's own user, or a listed uid or gid. */
bool hc__peer_allowed(const struct server *srv, uid_t uid, gid_t gid)
{
    unsigned i;

    if (!srv->restrict_peers || uid == 0 || uid == geteuid())
        return true;
    for (i = 0; i < srv->n_uids; i++)
        if (srv->allowed_uids[i] == uid)
            return true;
    for (i = 0; i < srv->n_gids; i++)
        if (srv->allowed_gids[i] == gid)
            return true;
    return false;
}
