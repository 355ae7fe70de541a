/* `run`: the reconciler daemon on an sd-event loop. */
#pragma once

/* Run until SIGTERM/SIGINT. Returns a sysexits code: 0 after a clean stop;
 * 65/66/77/78 when the files are bad at start. */
int daemon_run(const char *config_path);
