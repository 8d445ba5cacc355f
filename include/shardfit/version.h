/* version.h: the one place shardfit's version is written (--version, and
 * every run's summary.json). */
#ifndef SHARDFIT_VERSION_H
#define SHARDFIT_VERSION_H

#define SF_VERSION "0.1.0"

#endif
