#ifndef PJG_EPOLL_SHIM_H
#define PJG_EPOLL_SHIM_H

/* Glibc's Swift module does not import epoll or eventfd; the event loop waits on sockets with them. */
#include <sys/epoll.h>
#include <sys/eventfd.h>

#endif
