/* handle_image.c: IIIF Image API 3.0 and 2.1 (placeholder until the codec lands). */
#include "app.h"

void handle_image(struct app *app, const struct http_request *req, struct http_response *resp)
{
    (void)app;
    (void)req;
    http_error(resp, 501, "the Image API is not built yet");
}
