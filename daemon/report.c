#include "report.h"

#include <jansson.h>
#include <stdlib.h>

#include "units.h"
#include "util.h"

static void format_value(enum js_field_kind kind, int64_t v, char *buf, size_t n) {
        switch (kind) {
        case JS_FIELD_SIZE:
                units_format_size(v, buf, n);
                break;
        case JS_FIELD_COUNT:
                units_format_count(v, buf, n);
                break;
        case JS_FIELD_BOOL:
                snprintf(buf, n, "%s", v ? "true" : "false");
                break;
        }
}

void report_change(const struct plan_change *c, char *buf, size_t n) {
        char a[32], b[32];
        format_value(c->kind, c->old_value, a, sizeof(a));
        format_value(c->kind, c->new_value, b, sizeof(b));
        snprintf(buf, n, "%s %s -> %s", c->field, a, b);
}

void report_text(const struct plan *p, FILE *f) {
        for (size_t i = 0; i < p->n; i++) {
                const struct plan_entry *e = &p->v[i];
                fprintf(f, "%c %s", plan_action_symbol(e->action), e->decl->name);
                if (e->action == PLAN_ERROR) {
                        fprintf(f, "  %s\n", e->error);
                        continue;
                }
                for (size_t k = 0; k < e->n_changes; k++) {
                        char buf[128];
                        report_change(&e->changes[k], buf, sizeof(buf));
                        fprintf(f, "%s%s", k ? ", " : "  ", buf);
                }
                fputc('\n', f);
                for (size_t k = 0; k < e->n_warnings; k++)
                        fprintf(f, "    warning: %s\n", e->warnings[k]);
        }
}

void report_summary(const struct plan *p, bool done, FILE *f) {
        size_t count[PLAN_ERROR + 1] = { 0 };
        for (size_t i = 0; i < p->n; i++)
                count[p->v[i].action]++;
        if (done)
                fprintf(f, "%zu created, %zu enabled, %zu updated, %zu disabled, %zu in sync, %zu failed\n",
                        count[PLAN_CREATE], count[PLAN_ENABLE], count[PLAN_UPDATE], count[PLAN_DISABLE],
                        count[PLAN_UNCHANGED], count[PLAN_ERROR]);
        else
                fprintf(f, "%zu to create, %zu to enable, %zu to update, %zu to disable, %zu in sync, %zu failed\n",
                        count[PLAN_CREATE], count[PLAN_ENABLE], count[PLAN_UPDATE], count[PLAN_DISABLE],
                        count[PLAN_UNCHANGED], count[PLAN_ERROR]);
}

void report_json(const struct plan *p, FILE *f) {
        json_t *accounts = json_array();
        for (size_t i = 0; i < p->n; i++) {
                const struct plan_entry *e = &p->v[i];
                json_t *changes = json_array();
                for (size_t k = 0; k < e->n_changes; k++) {
                        const struct plan_change *c = &e->changes[k];
                        json_t *o = c->kind == JS_FIELD_BOOL ? json_boolean(c->old_value) : json_integer(c->old_value);
                        json_t *n = c->kind == JS_FIELD_BOOL ? json_boolean(c->new_value) : json_integer(c->new_value);
                        json_array_append_new(changes, json_pack("{s:s, s:o, s:o}", "field", c->field, "old", o, "new", n));
                }
                json_t *warnings = json_array();
                for (size_t k = 0; k < e->n_warnings; k++)
                        json_array_append_new(warnings, json_string(e->warnings[k]));
                json_t *a = json_pack("{s:s, s:o, s:s, s:o, s:o, s:o}", "name", e->decl->name, "key",
                                      e->key[0] ? json_string(e->key) : json_null(), "action",
                                      plan_action_name(e->action), "changes", changes, "warnings", warnings,
                                      "error", e->error ? json_string(e->error) : json_null());
                json_array_append_new(accounts, a);
        }
        json_t *doc = json_pack("{s:o}", "accounts", accounts);
        json_dumpf(doc, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', f);
        json_decref(doc);
}
