/* notify.h: telling a service manager how the daemon is doing (systemd's sd_notify protocol), so a
 * Type=notify unit counts sasp-server as started only once its model is loaded and it is listening. */
#ifndef SASP_NOTIFY_H
#define SASP_NOTIFY_H

/* Send state ("READY=1", "STOPPING=1", "STATUS=...", newline-separated assignments) as one datagram
 * to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or @name in the abstract namespace).
 * 1 when sent, 0 when $NOTIFY_SOCKET is unset (not run by a service manager), -1 when it failed
 * (errno says why). */
int sasp_notify(const char *state);

#endif
