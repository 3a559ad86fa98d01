
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_VERSION_H_INCLUDED_
#define _NGX_HTTP_EVENTS_VERSION_H_INCLUDED_


/* the one place the version is written: make deb and CHANGES read it */
#define NGX_HTTP_EVENTS_VERSION         "0.15.0"


#endif /* _NGX_HTTP_EVENTS_VERSION_H_INCLUDED_ */
