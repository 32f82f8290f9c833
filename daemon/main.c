/* hicached: the per-node KV-cache page daemon. See README.md and DESIGN.md. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "config.h"
#include "log.h"
#include "server.h"

/* Each client costs a socket, each open segment a file: take the hard limit
 * of open files rather than the soft default of 1024. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct hc_config cfg;
    char err[512];
    bool exit_now = false;
    struct stat st;
    int status;

    if (hc_config_init(&cfg) < 0) {
        fprintf(stderr, "hicached: out of memory\n");
        return 1;
    }
    if (hc_config_parse_args(&cfg, argc, argv, &exit_now, err, sizeof(err)) < 0) {
        fprintf(stderr, "hicached: %s\n", err);
        fprintf(stderr, "Try 'hicached --help'.\n");
        hc_config_free(&cfg);
        return 2;
    }
    if (exit_now) {
        hc_config_free(&cfg);
        return 0;
    }
    /* The mount point is never created here: on a node whose JuiceFS mount is
     * missing, writing into the empty directory beneath would fill the local
     * disk with pages no other node can see. */
    if (stat(cfg.mount_point, &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "hicached: mount_point %s is not a directory: %s\n", cfg.mount_point,
                stat(cfg.mount_point, &st) < 0 ? strerror(errno) : "not a directory");
        hc_config_free(&cfg);
        return 1;
    }
    hc_log_set_level(hc_config_log_level(&cfg));
    raise_nofile();
    status = hc_server_run(&cfg, argc, argv);
    hc_config_free(&cfg);
    return status;
}
