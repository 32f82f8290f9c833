/* sd_notify without libsystemd: a datagram to $NOTIFY_SOCKET. */
#ifndef HC_NOTIFY_H
#define HC_NOTIFY_H

/* Sends state (e.g. "READY=1") to $NOTIFY_SOCKET (a path, or '@' for the
 * abstract namespace). Returns 1 if sent, 0 if NOTIFY_SOCKET is unset, -errno
 * on failure. */
int hc_notify(const char *state);

/* Takes sockets passed by systemd socket activation: if $LISTEN_PID is this
 * process and $LISTEN_FDS >= 1, marks them close-on-exec and returns the
 * first fd (3). Returns -ENOENT when none were passed to this process
 * ($LISTEN_PID unset or another process, $LISTEN_FDS unset or 0), -EINVAL
 * when a variable does not parse, or -errno when a passed fd is unusable
 * (-EBADF: not open). Unsets the variables in every case. */
int hc_listen_fds(void);

#endif
