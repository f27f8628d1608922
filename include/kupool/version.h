#ifndef KUPOOL_VERSION_H
#define KUPOOL_VERSION_H
#define KP_VERSION "0.1.0"
#endif
