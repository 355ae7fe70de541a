/* `init DIR`: a ready sandbox (operator, system account, server and daemon settings). */
#pragma once

#define INIT_RANDOM_PORT (-1)

/* Write the sandbox into dir (created if missing; refuses to overwrite an
 * existing one: -EEXIST). port is 1..65535, or INIT_RANDOM_PORT to let
 * nats-server pick one (it writes it to DIR/nats-server_<pid>.ports).
 * 0, or negative errno with *err. */
int init_sandbox(const char *dir, int port, char **err);
/* The same for config mode: a nats-server.conf whose accounts SYS, APP, ORDERS
 * and LEGACY are defined in it, each example account's block including its
 * fragment in DIR/accounts.d; an nkey user of SYS for the daemon
 * (accountd.nk) and one per example account (<ACCOUNT>-user.nk). */
int init_sandbox_config(const char *dir, int port, char **err);
