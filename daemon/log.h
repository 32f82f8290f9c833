/* Log lines to stderr (journald keeps them under systemd): one line each,
 * with a level prefix that journald understands (<3> error ... <7> debug). */
#ifndef HC_LOG_H
#define HC_LOG_H

enum hc_log_level { HC_LOG_ERR = 3, HC_LOG_WARN = 4, HC_LOG_INFO = 6, HC_LOG_DEBUG = 7 };

/* Lines above this level are dropped; default HC_LOG_INFO. Any thread. */
void hc_log_set_level(enum hc_log_level level);

/* Thread-safe (one write per line). */
void hc_log(enum hc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
