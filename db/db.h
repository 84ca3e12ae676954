/* db.h: the SQLite catalogue (objects, canvases, collections). Filled by `vellum import`,
 * read by the workers. */
#ifndef VELLUM_DB_H
#define VELLUM_DB_H

#include "verr.h"

#endif
