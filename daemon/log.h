/* Logging: structured journal entries when stderr is the journal, plain lines otherwise. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

/* One MESSAGE_ID per event kind; docs/nats-accountd.catalog explains each. */
#define MSGID_PASS_STARTED "c483d76855304b74858aec8e384f64c1"
#define MSGID_PASS_FINISHED "024b56462b0949209411f7c446128bd6"
#define MSGID_ACCOUNT_CREATED "c6aacab116ab428aa5f3f192f7a8ef59"
#define MSGID_ACCOUNT_ENABLED "4cd18b6fddee46aea8c43a78bcd80313"
#define MSGID_ACCOUNT_UPDATED "ef6d501724ef402da51511b052bb943b"
#define MSGID_ACCOUNT_DISABLED "f04517076b124ea691948d36f10351d3"
#define MSGID_ACCOUNT_FAILED "4d481261b3fc41f0b25b7a1d17c42859"
#define MSGID_FILE_REJECTED "8994fff1adc54adfa27e1a2b34b14dbb"
#define MSGID_SERVER_LOST "eefb18441554425a95ef5921b331984e"
#define MSGID_SERVER_RESTORED "af7e530638f94fa297ee2f170ddc4f59"

struct log_field {
        const char *key; /* e.g. "NATS_ACCOUNT" */
        const char *value;
};

/* Decide the destination: the journal when $JOURNAL_STREAM names our stderr. */
void log_open(int max_priority);
void log_set_max_priority(int max_priority);
bool log_to_journal(void);

/* priority: LOG_ERR .. LOG_DEBUG. msgid may be NULL. fields: n key/value pairs
 * (NULL values are left out). Never pass secrets. */
__attribute__((format(printf, 5, 6))) void log_event(int priority, const char *msgid, const struct log_field *fields,
                                                     size_t n, const char *fmt, ...);

#define log_error(...) log_event(LOG_ERR, NULL, NULL, 0, __VA_ARGS__)
#define log_warning(...) log_event(LOG_WARNING, NULL, NULL, 0, __VA_ARGS__)
#define log_notice(...) log_event(LOG_NOTICE, NULL, NULL, 0, __VA_ARGS__)
#define log_info(...) log_event(LOG_INFO, NULL, NULL, 0, __VA_ARGS__)
#define log_debug(...) log_event(LOG_DEBUG, NULL, NULL, 0, __VA_ARGS__)
