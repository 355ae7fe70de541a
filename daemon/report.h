/* Plans and results as text and JSON, as SPEC.md fixes them. */
#pragma once
#include <stdbool.h>
#include <stdio.h>

#include "diff.h"

/* "~ APP  max_store 5GiB -> 10GiB, ..." one line per account on f, warnings
 * indented below it. */
void report_text(const struct plan *p, FILE *f);
/* One line counting each action (pending ones for a plan, done ones after apply). */
void report_summary(const struct plan *p, bool done, FILE *f);
/* {"accounts":[{"name","key","action","changes":[{"field","old","new"}],"warnings":[],"error"}]} */
void report_json(const struct plan *p, FILE *f);
/* One plan change as "max_store 5GiB -> 10GiB" (for logs too). */
void report_change(const struct plan_change *c, char *buf, size_t n);
