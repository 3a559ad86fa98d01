
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Time as the store and its clients see it: milliseconds since the
 * epoch from nginx's cached clock, written as RFC 3339 in UTC with
 * milliseconds, and read back from the ISO-8601 forms clients send
 * (occurredAt, since, until).  A date that does not exist in the
 * calendar is refused rather than rolled over into the next month.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_time.h"


static ngx_int_t ngx_http_events_time_days(ngx_int_t year, ngx_int_t month);
static u_char *ngx_http_events_time_two(u_char *p, ngx_uint_t n);


uint64_t
ngx_http_events_time_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/*
 * "%4d-%02d-%02dT%02d:%02d:%02d.%03uLZ" digit by digit: every stored
 * event gets one (twice: the ring's copy and the answer), and
 * ngx_sprintf() with seven arguments was a tenth of the store's time
 */

u_char *
ngx_http_events_time_write(u_char *p, uint64_t ms)
{
    ngx_uint_t  year, frac;
    ngx_tm_t    tm;

    ngx_gmtime((time_t) (ms / 1000), &tm);

    year = tm.ngx_tm_year;
    frac = ms % 1000;

    *p++ = (u_char) ('0' + year / 1000 % 10);
    *p++ = (u_char) ('0' + year / 100 % 10);
    *p++ = (u_char) ('0' + year / 10 % 10);
    *p++ = (u_char) ('0' + year % 10);
    *p++ = '-';
    p = ngx_http_events_time_two(p, tm.ngx_tm_mon);
    *p++ = '-';
    p = ngx_http_events_time_two(p, tm.ngx_tm_mday);
    *p++ = 'T';
    p = ngx_http_events_time_two(p, tm.ngx_tm_hour);
    *p++ = ':';
    p = ngx_http_events_time_two(p, tm.ngx_tm_min);
    *p++ = ':';
    p = ngx_http_events_time_two(p, tm.ngx_tm_sec);
    *p++ = '.';
    *p++ = (u_char) ('0' + frac / 100);
    *p++ = (u_char) ('0' + frac / 10 % 10);
    *p++ = (u_char) ('0' + frac % 10);
    *p++ = 'Z';

    return p;
}


static u_char *
ngx_http_events_time_two(u_char *p, ngx_uint_t n)
{
    *p++ = (u_char) ('0' + n / 10 % 10);
    *p++ = (u_char) ('0' + n % 10);

    return p;
}


/*
 * ISO-8601 in the forms clients send: a date, or a date and time with
 * optional fraction and a zone ("Z" or +hh:mm); ms may be NULL.
 */

ngx_int_t
ngx_http_events_time_parse(u_char *p, size_t len, int64_t *ms)
{
    u_char     *end;
    int64_t     t, frac, scale;
    ngx_int_t   year, month, day, hour, min, sec, zone, sign;

    end = p + len;

    if (len < 10 || p[4] != '-' || p[7] != '-') {
        return NGX_ERROR;
    }

    year = ngx_atoi(p, 4);
    month = ngx_atoi(p + 5, 2);
    day = ngx_atoi(p + 8, 2);
    hour = min = sec = 0;
    frac = 0;
    zone = 0;

    if (year < 1970 || month < 1 || month > 12 || day < 1
        || day > ngx_http_events_time_days(year, month))
    {
        /* 2026-02-29 is not March 1st: a date that never was is refused */
        return NGX_ERROR;
    }

    p += 10;

    if (p < end) {
        if (end - p < 9 || (*p != 'T' && *p != 't' && *p != ' ')
            || p[3] != ':' || p[6] != ':')
        {
            return NGX_ERROR;
        }

        hour = ngx_atoi(p + 1, 2);
        min = ngx_atoi(p + 4, 2);
        sec = ngx_atoi(p + 7, 2);

        if (hour < 0 || hour > 23 || min < 0 || min > 59
            || sec < 0 || sec > 60)
        {
            return NGX_ERROR;
        }

        p += 9;

        if (p < end && *p == '.') {
            p++;
            scale = 1000;

            if (p == end || *p < '0' || *p > '9') {
                return NGX_ERROR;
            }

            while (p < end && *p >= '0' && *p <= '9') {
                if (scale > 1) {
                    scale /= 10;
                    frac += (*p - '0') * scale;
                }

                p++;
            }
        }

        if (p == end) {
            return NGX_ERROR;
        }

        if (*p == 'Z' || *p == 'z') {
            p++;

        } else if (*p == '+' || *p == '-') {
            sign = (*p == '-') ? -1 : 1;

            if (end - p != 6 || p[3] != ':') {
                return NGX_ERROR;
            }

            zone = ngx_atoi(p + 1, 2) * 60 + ngx_atoi(p + 4, 2);

            if (ngx_atoi(p + 1, 2) < 0 || ngx_atoi(p + 1, 2) > 23
                || ngx_atoi(p + 4, 2) < 0 || ngx_atoi(p + 4, 2) > 59)
            {
                return NGX_ERROR;
            }

            zone *= sign;
            p += 6;

        } else {
            return NGX_ERROR;
        }
    }

    if (p != end) {
        return NGX_ERROR;
    }

    /* days from the civil date: years start in March, Gauss' formula */

    month -= 2;

    if (month <= 0) {
        month += 12;
        year -= 1;
    }

    t = (int64_t) (365 * year + year / 4 - year / 100 + year / 400
                   + 367 * month / 12 - 30 + day - 1 - 719527 + 31 + 28);
    t = t * 86400 + hour * 3600 + min * 60 + sec - zone * 60;

    if (t < 0) {
        /* before 1970 in UTC: not a time this store has seen */
        return NGX_ERROR;
    }

    if (ms) {
        *ms = t * 1000 + frac;
    }

    return NGX_OK;
}


/* the days of a month of the proleptic Gregorian calendar */

static ngx_int_t
ngx_http_events_time_days(ngx_int_t year, ngx_int_t month)
{
    static const u_char  days[] = { 31, 28, 31, 30, 31, 30,
                                    31, 31, 30, 31, 30, 31 };

    if (month == 2
        && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
    {
        return 29;
    }

    return days[month - 1];
}
