/* manifest.h: IIIF JSON-LD documents (info.json, manifests, collections) from plain structs.
 * No HTTP, no database: callers pass what the document needs and get JSON text back. */
#ifndef VELLUM_MANIFEST_H
#define VELLUM_MANIFEST_H

#include "verr.h"

#endif
