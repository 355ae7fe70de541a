/* Account names: they end up inside NATS subjects, so the alphabet is small. */
#pragma once
#include <stdbool.h>

#define ACCOUNT_NAME_MAX 64

/* 1-64 characters of A-Z a-z 0-9 _ -. On false, *why says what is wrong. */
bool account_name_valid(const char *name, const char **why);
