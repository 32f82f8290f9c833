/* sd_notify and sd_listen_fds without libsystemd (see notify.h), after
 * systemd's self-contained MIT-0 example. */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int hc_notify(const char *state)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *path = getenv("NOTIFY_SOCKET");
    size_t plen, slen;
    socklen_t salen;
    ssize_t n;
    int fd, rc;

    if (!state)
        return -EINVAL;
    if (!path || !path[0])
        return 0;
    /* A path socket must be absolute; '@' means the abstract namespace. */
    if (path[0] != '/' && path[0] != '@')
        return -EAFNOSUPPORT;
    plen = strlen(path);
    if (plen >= sizeof(sa.sun_path))
        return -E2BIG;
    memcpy(sa.sun_path, path, plen);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    /* Abstract names are not NUL-terminated: the length says where they end. */
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '/'));

    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    slen = strlen(state);
    n = sendto(fd, state, slen, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    if (n < 0)
        rc = -errno;
    else if ((size_t)n != slen)
        rc = -EPROTO;
    else
        rc = 1;
    close(fd);
    return rc;
}

#define LISTEN_FDS_START 3

int hc_listen_fds(void)
{
    const char *e;
    char *end;
    long pid, n;
    int flags, rc = -ENOENT;

    e = getenv("LISTEN_PID");
    if (!e)
        goto out;
    errno = 0;
    pid = strtol(e, &end, 10);
    if (errno || end == e || *end || pid <= 0) {
        rc = -EINVAL;
        goto out;
    }
    if (pid != (long)getpid())
        goto out; /* meant for another process */
    e = getenv("LISTEN_FDS");
    if (!e)
        goto out;
    errno = 0;
    n = strtol(e, &end, 10);
    if (errno || end == e || *end || n < 0 || n > 1024) {
        rc = -EINVAL;
        goto out;
    }
    if (n == 0)
        goto out;
    for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + n; fd++) {
        flags = fcntl(fd, F_GETFD);
        if (flags < 0 || (!(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)) {
            rc = -errno;
            goto out;
        }
    }
    rc = LISTEN_FDS_START;

out:
    /* Like sd_listen_fds(unset_environment=1): children must not inherit
     * these, whether or not they were meant for us. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return rc;
}
