
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_CLUSTER_H_INCLUDED_
#define _NGX_HTTP_EVENTS_CLUSTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_store.h"


extern ngx_module_t  ngx_http_events_cluster_module;


#endif /* _NGX_HTTP_EVENTS_CLUSTER_H_INCLUDED_ */
