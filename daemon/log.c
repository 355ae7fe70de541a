#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
/* CODE_FILE=log.c on every entry would tell the reader nothing. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "util.h"

static struct {
        int max_priority;
        bool journal;
} log_state = { .max_priority = LOG_INFO };

static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        if (!e)
                return false;
        unsigned long long dev, ino;
        if (sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        struct stat st;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_open(int max_priority) {
        log_state.max_priority = max_priority;
        log_state.journal = stderr_is_journal();
}

void log_set_max_priority(int max_priority) {
        log_state.max_priority = max_priority;
}

bool log_to_journal(void) {
        return log_state.journal;
}

static const char *const prefixes[] = {
        [LOG_EMERG] = "error: ", [LOG_ALERT] = "error: ", [LOG_CRIT] = "error: ", [LOG_ERR] = "error: ",
        [LOG_WARNING] = "warning: ", [LOG_NOTICE] = "", [LOG_INFO] = "", [LOG_DEBUG] = "debug: ",
};

void log_event(int priority, const char *msgid, const struct log_field *fields, size_t n, const char *fmt, ...) {
        if (priority > log_state.max_priority)
                return;
        va_list ap;
        va_start(ap, fmt);
        char *msg = xvasprintf(fmt, ap);
        va_end(ap);
        if (!log_state.journal) {
                fprintf(stderr, "%s%s\n", prefixes[priority & 7], msg);
                free(msg);
                return;
        }
        /* MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, MESSAGE_ID and the fields. */
        size_t cap = 4 + n, k = 0;
        struct iovec *iov = xcalloc(cap, sizeof(*iov));
        char **owned = xcalloc(cap, sizeof(*owned));
        owned[k] = xasprintf("MESSAGE=%s", msg);
        owned[k + 1] = xasprintf("PRIORITY=%d", priority);
        owned[k + 2] = xstrdup("SYSLOG_IDENTIFIER=nats-accountd");
        k += 3;
        if (msgid)
                owned[k++] = xasprintf("MESSAGE_ID=%s", msgid);
        for (size_t i = 0; i < n; i++)
                if (fields[i].value)
                        owned[k++] = xasprintf("%s=%s", fields[i].key, fields[i].value);
        for (size_t i = 0; i < k; i++)
                iov[i] = (struct iovec){ .iov_base = owned[i], .iov_len = strlen(owned[i]) };
        if (sd_journal_sendv(iov, (int)k) < 0)
                fprintf(stderr, "%s%s\n", prefixes[priority & 7], msg);
        for (size_t i = 0; i < k; i++)
                free(owned[i]);
        free(owned);
        free(iov);
        free(msg);
}
