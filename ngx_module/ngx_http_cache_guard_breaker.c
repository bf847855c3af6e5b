
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Circuit breakers and the other state every worker shares and a reload
 * keeps: one record per Redis backend ("redis") and per policy
 * ("origin:NAME"), in a zone of its own whose size never depends on the
 * configuration, so that nginx hands the same memory to the new workers.
 *
 * A record counts results in per-second buckets, each one 64-bit word
 * updated by compare-and-swap: the closed state costs a request two loads
 * and, for a result, one CAS.  State changes are rare and happen under the
 * slab mutex, which nginx's master releases if its holder dies.
 *
 * A record also counts the fetches in flight to its origin, in total and
 * per worker slot, so that a worker killed in the middle of fetches takes
 * its share with it: the next worker to start subtracts the dead one's.
 */


#include "ngx_http_cache_guard_breaker.h"

#include <signal.h>


/* a bucket packs three counts into one ngx_atomic_t */

#if (NGX_PTR_SIZE < 8)
#error "nginx-cache-guard needs a 64-bit platform"
#endif


/* a bucket: the second (24 bits), requests (20 bits), failures (20 bits) */

#define NGX_HTTP_CACHE_GUARD_B_SEC(w)     ((w) >> 40)
#define NGX_HTTP_CACHE_GUARD_B_REQ(w)     (((w) >> 20) & 0xfffff)
#define NGX_HTTP_CACHE_GUARD_B_FAIL(w)    ((w) & 0xfffff)
#define NGX_HTTP_CACHE_GUARD_B_SECMASK    0xffffff
#define NGX_HTTP_CACHE_GUARD_B_MAX        0xfffff

#define NGX_HTTP_CACHE_GUARD_STATE_LAYOUT  4


static ngx_int_t ngx_http_cache_guard_state_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_uint_t ngx_http_cache_guard_state_sweep(
    ngx_http_cache_guard_state_t *st, ngx_log_t *log, ngx_uint_t starting);
static ngx_uint_t ngx_http_cache_guard_slot_give_back(
    ngx_http_cache_guard_state_t *st, ngx_uint_t slot, ngx_log_t *log);
static ngx_http_cache_guard_record_t *ngx_http_cache_guard_record_get(
    ngx_http_cache_guard_state_t *st, u_char *name, size_t len,
    ngx_uint_t oldest, ngx_log_t *log);
static void ngx_http_cache_guard_breaker_set(
    ngx_http_cache_guard_record_t *rec, ngx_uint_t from, ngx_uint_t to,
    ngx_log_t *log, const char *why, ngx_msec_t since);
static void ngx_http_cache_guard_breaker_clear(
    ngx_http_cache_guard_record_t *rec);


ngx_http_cache_guard_state_t  *ngx_http_cache_guard_state;
static ngx_slab_pool_t        *ngx_http_cache_guard_state_pool;
static ngx_int_t               ngx_http_cache_guard_slot = -1;


static ngx_str_t  ngx_http_cache_guard_state_name =
    ngx_string("cache_guard:state");

static const char  *ngx_http_cache_guard_breaker_names[] = {
    "closed", "open", "half-open"
};


void
ngx_http_cache_guard_breaker_defaults(ngx_http_cache_guard_breaker_conf_t *bc,
    ngx_msec_t open_for)
{
    ngx_uint_t  status;

    ngx_memzero(bc, sizeof(ngx_http_cache_guard_breaker_conf_t));

    bc->enabled = 1;
    bc->window_ms = 10000;
    bc->window = 10;
    bc->min_requests = 20;
    bc->failure_rate = 0.5;
    bc->open_for = open_for;
    bc->half_open = 3;

    for (status = 500; status < 600; status++) {
        bc->statuses[status / 64] |= (uint64_t) 1 << (status % 64);
    }
}


/*
 * Whether two settings make the same breaker; "strict" also compares the
 * settings of disabled breakers and the statuses that count.
 */

ngx_uint_t
ngx_http_cache_guard_breaker_same(ngx_http_cache_guard_breaker_conf_t *a,
    ngx_http_cache_guard_breaker_conf_t *b, ngx_uint_t strict)
{
    if (a->enabled != b->enabled) {
        return 0;
    }

    if (!a->enabled && !strict) {
        return 1;
    }

    return a->window == b->window
           && a->min_requests == b->min_requests
           && a->failure_rate == b->failure_rate
           && a->open_for == b->open_for
           && a->half_open == b->half_open
           && (!strict
               || ngx_memcmp(a->statuses, b->statuses, sizeof(a->statuses))
                  == 0);
}


/*
 * Asks for the record NAME: *rec points at it once the state zone is
 * initialised (records of one name are one breaker).
 */

ngx_int_t
ngx_http_cache_guard_state_want(ngx_conf_t *cf, ngx_str_t *name,
    ngx_http_cache_guard_record_t **rec)
{
    ngx_http_cache_guard_want_t       *w;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_guard_module);

    if (mcf->wants.elts == NULL
        && ngx_array_init(&mcf->wants, cf->pool, 8,
                          sizeof(ngx_http_cache_guard_want_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    w = ngx_array_push(&mcf->wants);
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->name = *name;
    w->rec = rec;

    return NGX_OK;
}


/* from postconfiguration, once every record is wanted */

ngx_int_t
ngx_http_cache_guard_state_add(ngx_conf_t *cf)
{
    size_t                             size;
    ngx_shm_zone_t                    *shm_zone;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_guard_module);

    /* fixed, whatever the configuration: a reload keeps the segment */

    size = ngx_align(sizeof(ngx_http_cache_guard_state_t), ngx_pagesize)
           + 16 * ngx_pagesize;

    shm_zone = ngx_shared_memory_add(cf, &ngx_http_cache_guard_state_name,
                                     size, &ngx_http_cache_guard_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: the zone name \"%V\" is reserved",
                           &ngx_http_cache_guard_state_name);
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_cache_guard_state_init;
    shm_zone->data = mcf;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_state_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_int_t                          rc;
    ngx_uint_t                         i, oldest;
    ngx_slab_pool_t                   *shpool;
    ngx_http_cache_guard_want_t       *w;
    ngx_http_cache_guard_state_t      *st;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists || data) {
        st = shpool->data;

        if (st == NULL || st->layout != NGX_HTTP_CACHE_GUARD_STATE_LAYOUT) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "cache guard: the state zone has another layout, "
                          "restart nginx");
            return NGX_ERROR;
        }

    } else {
        st = ngx_slab_calloc(shpool, sizeof(ngx_http_cache_guard_state_t));
        if (st == NULL) {
            return NGX_ERROR;
        }

        st->layout = NGX_HTTP_CACHE_GUARD_STATE_LAYOUT;
        st->started = ngx_time();
        st->node = (((uint64_t) ngx_random() << 32 | (uint64_t) ngx_random())
                    ^ ((uint64_t) ngx_pid << 16) ^ (uint64_t) ngx_time())
                   & 0x3fffffffffffffffULL;
        shpool->data = st;
        shpool->log_nomem = 0;
    }

    ngx_http_cache_guard_state = st;
    ngx_http_cache_guard_state_pool = shpool;

    /*
     * The records of this configuration, found again by name on reload.
     * Records are never moved: the workers of older configurations still
     * point at theirs.  A record that no configuration of a live worker
     * names may be taken over by a new name (see record_get); each
     * configuration read is a generation, and each worker's slot says
     * which one it runs.  Dead workers' slots are freed first, so that
     * they pin no generation.
     */

    ngx_shmtx_lock(&shpool->mutex);

    (void) ngx_http_cache_guard_state_sweep(st, shm_zone->shm.log, 0);

    mcf->state_gen = ++st->generation;
    oldest = mcf->state_gen;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_SLOTS; i++) {

        /* with master_process off, this process moves to the new one */

        if (st->slots[i] != 0 && st->slots[i] != ngx_pid
            && st->slot_gen[i] < oldest)
        {
            oldest = st->slot_gen[i];
        }
    }

    rc = NGX_OK;
    w = mcf->wants.elts;

    for (i = 0; rc == NGX_OK && i < mcf->wants.nelts; i++) {
        *w[i].rec = ngx_http_cache_guard_record_get(st, w[i].name.data,
                                                    w[i].name.len, oldest,
                                                    shm_zone->shm.log);
        if (*w[i].rec == NULL) {
            rc = NGX_ERROR;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return rc;
}


/*
 * Under the mutex, in the master (or the single process) reading a
 * configuration whose generation is st->generation.  A name found is
 * marked as this generation's.  A new name takes an unused record, else
 * the record of a name that neither this generation nor the one before
 * it named (the old workers of the last reload may still be busy with
 * it) and that no live worker's configuration named (a worker of a
 * generation at least "oldest" never points at it).  The record is reset
 * when taken over: no count, state or forced state of the old name
 * carries over to the new one.
 */

static ngx_http_cache_guard_record_t *
ngx_http_cache_guard_record_get(ngx_http_cache_guard_state_t *st,
    u_char *name, size_t len, ngx_uint_t oldest, ngx_log_t *log)
{
    ngx_uint_t                      i, gen;
    ngx_http_cache_guard_record_t  *rec, *unused;

    if (len >= NGX_HTTP_CACHE_GUARD_RECORD_NAME) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "cache guard: the name \"%*s\" is too long for a "
                      "breaker, %d bytes at most", len, name,
                      NGX_HTTP_CACHE_GUARD_RECORD_NAME - 1);
        return NULL;
    }

    gen = st->generation;
    unused = NULL;

    for (i = 0; i < st->nrecords; i++) {
        rec = &st->records[i];

        if (rec->len == len && ngx_strncmp(rec->name, name, len) == 0) {
            rec->gen = gen;
            return rec;
        }

        if (unused == NULL && rec->gen + 1 < gen && rec->gen < oldest) {
            unused = rec;
        }
    }

    if (st->nrecords < NGX_HTTP_CACHE_GUARD_MAX_RECORDS) {
        rec = &st->records[st->nrecords];

    } else if (unused) {
        rec = unused;

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "cache guard: the breaker \"%*s\" takes over the "
                      "record of \"%*s\", named by no configuration in "
                      "use", len, name, rec->len, rec->name);

        ngx_memzero(rec, sizeof(ngx_http_cache_guard_record_t));

    } else {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "cache guard: no room for the breaker \"%*s\": "
                      "%d names are used by this configuration and by the "
                      "ones that workers still run", len, name,
                      NGX_HTTP_CACHE_GUARD_MAX_RECORDS);
        return NULL;
    }

    ngx_memcpy(rec->name, name, len);
    rec->len = len;
    rec->gen = gen;
    rec->since = ngx_current_msec;

    if (rec == &st->records[st->nrecords]) {
        ngx_memory_barrier();
        st->nrecords++;
    }

    return rec;
}


/*
 * A worker takes a slot for its fetch counts; the slots of workers that
 * died (SIGKILL, a crash) are freed and their counts given back first.
 */

void
ngx_http_cache_guard_state_init_worker(ngx_cycle_t *cycle)
{
    ngx_int_t                          free;
    ngx_uint_t                         i;
    ngx_log_t                         *log;
    ngx_list_part_t                   *part;
    ngx_shm_zone_t                    *shm;
    ngx_http_cache_guard_state_t      *st;
    ngx_http_cache_guard_main_conf_t  *mcf;

    /*
     * The globals are this cycle's: a reload to a configuration without
     * the zone, or a failed one, must not leave them on freed memory.
     */

    log = cycle->log;
    ngx_http_cache_guard_state = NULL;
    ngx_http_cache_guard_state_pool = NULL;

    part = &cycle->shared_memory.part;
    shm = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm = part->elts;
            i = 0;
        }

        if (shm[i].tag == &ngx_http_cache_guard_module
            && shm[i].init == ngx_http_cache_guard_state_init)
        {
            ngx_http_cache_guard_state_pool = (ngx_slab_pool_t *)
                                                  shm[i].shm.addr;
            ngx_http_cache_guard_state = ngx_http_cache_guard_state_pool->data;
            break;
        }
    }

    st = ngx_http_cache_guard_state;

    if (st == NULL) {
        return;
    }

    free = -1;
    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_cache_guard_module);

    ngx_shmtx_lock(&ngx_http_cache_guard_state_pool->mutex);

    (void) ngx_http_cache_guard_state_sweep(st, log, 1);

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_SLOTS; i++) {
        if (st->slots[i] == 0) {
            free = i;
            break;
        }
    }

    if (free != -1) {
        st->slots[free] = ngx_pid;
        st->slot_gen[free] = mcf ? mcf->state_gen : st->generation;
    }

    ngx_shmtx_unlock(&ngx_http_cache_guard_state_pool->mutex);

    ngx_http_cache_guard_slot = free;

    if (free == -1) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "cache guard: no free worker slot, the fetches of "
                      "this worker are not given back if it dies");
    }
}


/*
 * Under the mutex: frees the slots of dead workers, giving their fetches
 * back; the number given back.  A worker killed while shutting down after
 * a reload is replaced by nobody, so this also runs when a cap is reached.
 */

static ngx_uint_t
ngx_http_cache_guard_state_sweep(ngx_http_cache_guard_state_t *st,
    ngx_log_t *log, ngx_uint_t starting)
{
    ngx_uint_t  i, total;

    total = 0;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_SLOTS; i++) {

        /*
         * a slot with this pid when this worker starts was a dead worker's
         * whose pid came back
         */

        if (st->slots[i] == 0
            || (st->slots[i] == ngx_pid && !starting)
            || (st->slots[i] != ngx_pid
                && (kill(st->slots[i], 0) == 0 || ngx_errno != NGX_ESRCH)))
        {
            continue;
        }

        total += ngx_http_cache_guard_slot_give_back(st, i, log);
    }

    return total;
}


/* under the mutex: a slot's fetches taken off the totals, the slot freed */

static ngx_uint_t
ngx_http_cache_guard_slot_give_back(ngx_http_cache_guard_state_t *st,
    ngx_uint_t slot, ngx_log_t *log)
{
    ngx_uint_t                      j, total;
    ngx_atomic_int_t                v;
    ngx_http_cache_guard_record_t  *rec;

    total = 0;

    for (j = 0; j < st->nrecords; j++) {
        rec = &st->records[j];
        v = (ngx_atomic_int_t) rec->slot_inflight[slot];

        if (v == 0) {
            continue;
        }

        (void) ngx_atomic_fetch_add(&rec->inflight, -v);
        rec->slot_inflight[slot] = 0;
        total += v;

        if (log) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "cache guard: %A fetches to \"%*s\" of the dead "
                          "worker %P given back", v, rec->len, rec->name,
                          st->slots[slot]);
        }
    }

    st->slots[slot] = 0;

    return total;
}


void
ngx_http_cache_guard_state_exit_worker(void)
{
    ngx_int_t                      slot;
    ngx_http_cache_guard_state_t  *st;

    st = ngx_http_cache_guard_state;
    slot = ngx_http_cache_guard_slot;

    if (st == NULL || slot == -1) {
        return;
    }

    /* what is still counted here will never end: give it back */

    ngx_shmtx_lock(&ngx_http_cache_guard_state_pool->mutex);

    if (st->slots[slot] == ngx_pid) {
        (void) ngx_http_cache_guard_slot_give_back(st, slot, NULL);
    }

    ngx_shmtx_unlock(&ngx_http_cache_guard_state_pool->mutex);

    ngx_http_cache_guard_slot = -1;
}


/* origin.max_concurrent: NGX_OK, or NGX_BUSY at the cap */

ngx_int_t
ngx_http_cache_guard_inflight_add(ngx_http_cache_guard_record_t *rec,
    ngx_uint_t max, ngx_log_t *log)
{
    ngx_uint_t  given;

    static ngx_msec_t  last_sweep;

    if (ngx_atomic_fetch_add(&rec->inflight, 1) >= max) {
        (void) ngx_atomic_fetch_add(&rec->inflight, -1);

        /* at the cap: perhaps because of a dead worker, once a second */

        if (ngx_current_msec - last_sweep < 1000) {
            return NGX_BUSY;
        }

        last_sweep = ngx_current_msec;

        ngx_shmtx_lock(&ngx_http_cache_guard_state_pool->mutex);
        given = ngx_http_cache_guard_state_sweep(ngx_http_cache_guard_state,
                                                 log, 0);
        ngx_shmtx_unlock(&ngx_http_cache_guard_state_pool->mutex);

        if (given == 0 || ngx_atomic_fetch_add(&rec->inflight, 1) >= max) {
            if (given) {
                (void) ngx_atomic_fetch_add(&rec->inflight, -1);
            }

            return NGX_BUSY;
        }
    }

    if (ngx_http_cache_guard_slot != -1) {
        (void) ngx_atomic_fetch_add(
                             &rec->slot_inflight[ngx_http_cache_guard_slot], 1);
    }

    return NGX_OK;
}


void
ngx_http_cache_guard_inflight_done(ngx_http_cache_guard_record_t *rec)
{
    if (ngx_http_cache_guard_slot != -1) {
        (void) ngx_atomic_fetch_add(
                            &rec->slot_inflight[ngx_http_cache_guard_slot], -1);
    }

    (void) ngx_atomic_fetch_add(&rec->inflight, -1);
}


/*
 * NGX_OK: go ahead; NGX_AGAIN: go ahead as a half-open probe;
 * NGX_DECLINED: the breaker is open.
 */

ngx_int_t
ngx_http_cache_guard_breaker_allow(ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc, ngx_log_t *log)
{
    ngx_uint_t         state;
    ngx_msec_t         since;
    ngx_atomic_uint_t  n;

    if (rec == NULL || !bc->enabled) {
        return NGX_OK;
    }

    switch (rec->forced) {
    case NGX_HTTP_CACHE_GUARD_FORCED_OPEN:
        return NGX_DECLINED;
    case NGX_HTTP_CACHE_GUARD_FORCED_CLOSED:
        return NGX_OK;
    }

    state = rec->state;

    if (state == NGX_HTTP_CACHE_GUARD_CLOSED) {
        return NGX_OK;
    }

    since = (ngx_msec_t) rec->since;

    if ((ngx_msec_int_t) (ngx_current_msec - since) < (ngx_msec_int_t)
                                                      bc->open_for)
    {
        if (state == NGX_HTTP_CACHE_GUARD_OPEN) {
            return NGX_DECLINED;
        }

    } else {
        /*
         * open_for passed: an open breaker lets probes through; a
         * half-open one whose probes never reported lets new ones through
         */

        ngx_http_cache_guard_breaker_set(rec, state,
                                         NGX_HTTP_CACHE_GUARD_HALF_OPEN, log,
                                         "probing", since);
    }

    if (rec->state != NGX_HTTP_CACHE_GUARD_HALF_OPEN) {
        return rec->state == NGX_HTTP_CACHE_GUARD_CLOSED ? NGX_OK
                                                          : NGX_DECLINED;
    }

    /* only a probe let through takes a place: refusals must not count */

    do {
        n = rec->probes;

        if (n >= bc->half_open) {
            return NGX_DECLINED;
        }

    } while (!ngx_atomic_cmp_set(&rec->probes, n, n + 1));

    return NGX_AGAIN;
}


/*
 * A probe let through (breaker_allow() said NGX_AGAIN) that will never
 * report, its client having gone before the origin answered: another
 * request may probe in its place.
 */

void
ngx_http_cache_guard_breaker_unprobe(ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc)
{
    ngx_atomic_uint_t  n;

    if (rec == NULL || !bc->enabled) {
        return;
    }

    do {
        n = rec->probes;

        if (n == 0 || rec->state != NGX_HTTP_CACHE_GUARD_HALF_OPEN) {
            return;
        }

    } while (!ngx_atomic_cmp_set(&rec->probes, n, n - 1));
}


/* NGX_HTTP_CACHE_GUARD_CLOSED, _OPEN or _HALF_OPEN, forced ones included */

ngx_uint_t
ngx_http_cache_guard_breaker_state(ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc)
{
    /* a breaker the configuration turned off is closed, whatever it was */

    if (rec == NULL || !bc->enabled) {
        return NGX_HTTP_CACHE_GUARD_CLOSED;
    }

    switch (rec->forced) {
    case NGX_HTTP_CACHE_GUARD_FORCED_OPEN:
        return NGX_HTTP_CACHE_GUARD_OPEN;
    case NGX_HTTP_CACHE_GUARD_FORCED_CLOSED:
        return NGX_HTTP_CACHE_GUARD_CLOSED;
    }

    return rec->state;
}


void
ngx_http_cache_guard_breaker_record(ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc, ngx_uint_t failed,
    ngx_log_t *log)
{
    uint64_t                     sec;
    ngx_uint_t                   req, fail, state;
    ngx_atomic_uint_t            old, w;
    ngx_http_cache_guard_window_t  win;

    if (rec == NULL || !bc->enabled) {
        return;
    }

    sec = (ngx_current_msec / 1000) & NGX_HTTP_CACHE_GUARD_B_SECMASK;

    /* one CAS: a bucket of another second starts again from this result */

    do {
        old = rec->buckets[(ngx_current_msec / 1000)
                           % NGX_HTTP_CACHE_GUARD_MAX_WINDOW];

        if (NGX_HTTP_CACHE_GUARD_B_SEC(old) == sec) {
            req = NGX_HTTP_CACHE_GUARD_B_REQ(old);
            fail = NGX_HTTP_CACHE_GUARD_B_FAIL(old);

            if (req == NGX_HTTP_CACHE_GUARD_B_MAX) {
                break;
            }

        } else {
            req = 0;
            fail = 0;
        }

        w = (sec << 40) | ((uint64_t) (req + 1) << 20) | (fail + failed);

    } while (!ngx_atomic_cmp_set(&rec->buckets[(ngx_current_msec / 1000)
                                          % NGX_HTTP_CACHE_GUARD_MAX_WINDOW],
                                 old, w));

    if (rec->forced != NGX_HTTP_CACHE_GUARD_FORCED_AUTO) {
        return;
    }

    state = rec->state;

    switch (state) {

    case NGX_HTTP_CACHE_GUARD_CLOSED:
        if (!failed) {
            if (rec->consecutive) {
                rec->consecutive = 0;
            }

            return;
        }

        /*
         * min_requests failures in a row open it at once: under heavy
         * traffic the window is full of the successes of the seconds
         * before a backend died, and would take window * failure_rate
         */

        if (ngx_atomic_fetch_add(&rec->consecutive, 1) + 1
            >= bc->min_requests)
        {
            ngx_http_cache_guard_breaker_set(rec, state,
                                             NGX_HTTP_CACHE_GUARD_OPEN, log,
                                             "failures in a row", 0);
            return;
        }

        ngx_http_cache_guard_breaker_window(rec, bc->window, &win);

        if (win.requests >= bc->min_requests
            && (double) win.failures
               >= bc->failure_rate * (double) win.requests)
        {
            ngx_http_cache_guard_breaker_set(rec, state,
                                             NGX_HTTP_CACHE_GUARD_OPEN, log,
                                             "too many failures", 0);
        }

        return;

    case NGX_HTTP_CACHE_GUARD_HALF_OPEN:
        if (failed) {
            ngx_http_cache_guard_breaker_set(rec, state,
                                             NGX_HTTP_CACHE_GUARD_OPEN, log,
                                             "a probe failed", 0);
            return;
        }

        if (ngx_atomic_fetch_add(&rec->probe_ok, 1) + 1 >= bc->half_open) {
            ngx_http_cache_guard_breaker_set(rec, state,
                                             NGX_HTTP_CACHE_GUARD_CLOSED, log,
                                             "the probes succeeded", 0);
        }

        return;

    default: /* open: results of what was sent before it opened */
        return;
    }
}


void
ngx_http_cache_guard_breaker_window(ngx_http_cache_guard_record_t *rec,
    ngx_uint_t window, ngx_http_cache_guard_window_t *win)
{
    uint64_t           now;
    ngx_uint_t         i;
    ngx_atomic_uint_t  w;

    now = ngx_current_msec / 1000;
    win->requests = 0;
    win->failures = 0;

    for (i = 0; i < window && i < NGX_HTTP_CACHE_GUARD_MAX_WINDOW; i++) {
        w = rec->buckets[(now - i) % NGX_HTTP_CACHE_GUARD_MAX_WINDOW];

        if (NGX_HTTP_CACHE_GUARD_B_SEC(w)
            == ((now - i) & NGX_HTTP_CACHE_GUARD_B_SECMASK))
        {
            win->requests += NGX_HTTP_CACHE_GUARD_B_REQ(w);
            win->failures += NGX_HTTP_CACHE_GUARD_B_FAIL(w);
        }
    }
}


/* the admin API: state "open", "closed" or "auto" */

ngx_int_t
ngx_http_cache_guard_breaker_force(ngx_http_cache_guard_record_t *rec,
    ngx_uint_t forced, ngx_log_t *log)
{
    ngx_shmtx_lock(&ngx_http_cache_guard_state_pool->mutex);

    if (forced == NGX_HTTP_CACHE_GUARD_FORCED_AUTO
        && rec->forced == NGX_HTTP_CACHE_GUARD_FORCED_OPEN)
    {
        /* released from a forced open: probes decide */
        rec->probes = 0;
        rec->probe_ok = 0;
        rec->state = NGX_HTTP_CACHE_GUARD_HALF_OPEN;
        rec->since = ngx_current_msec;

    } else if (forced == NGX_HTTP_CACHE_GUARD_FORCED_AUTO
               && rec->forced == NGX_HTTP_CACHE_GUARD_FORCED_CLOSED)
    {
        ngx_http_cache_guard_breaker_clear(rec);
        rec->state = NGX_HTTP_CACHE_GUARD_CLOSED;
        rec->since = ngx_current_msec;
    }

    rec->forced = forced;

    ngx_shmtx_unlock(&ngx_http_cache_guard_state_pool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "cache guard: breaker \"%*s\" %s by the admin API",
                  rec->len, rec->name,
                  forced == NGX_HTTP_CACHE_GUARD_FORCED_OPEN ? "forced open"
                  : forced == NGX_HTTP_CACHE_GUARD_FORCED_CLOSED
                    ? "forced closed" : "released");

    return NGX_OK;
}


const char *
ngx_http_cache_guard_breaker_name(ngx_uint_t state)
{
    return ngx_http_cache_guard_breaker_names[state];
}


static void
ngx_http_cache_guard_breaker_set(ngx_http_cache_guard_record_t *rec,
    ngx_uint_t from, ngx_uint_t to, ngx_log_t *log, const char *why,
    ngx_msec_t since)
{
    ngx_uint_t  changed, level;

    changed = 0;

    ngx_shmtx_lock(&ngx_http_cache_guard_state_pool->mutex);

    /*
     * Another worker may have moved it meanwhile: only one change counts;
     * a change decided on open_for checks that it is the same period.
     */

    if (rec->state == from && rec->forced == NGX_HTTP_CACHE_GUARD_FORCED_AUTO
        && (since == 0 || (ngx_msec_t) rec->since == since))
    {

        if (to == NGX_HTTP_CACHE_GUARD_HALF_OPEN) {
            rec->probes = 0;
            rec->probe_ok = 0;
        }

        if (to == NGX_HTTP_CACHE_GUARD_CLOSED) {
            ngx_http_cache_guard_breaker_clear(rec);
        }

        if (to == NGX_HTTP_CACHE_GUARD_OPEN) {
            rec->opened++;
            rec->consecutive = 0;
        }

        rec->state = to;
        rec->since = ngx_current_msec;
        changed = (from != to);
    }

    ngx_shmtx_unlock(&ngx_http_cache_guard_state_pool->mutex);

    if (changed) {
        level = (to == NGX_HTTP_CACHE_GUARD_OPEN) ? NGX_LOG_WARN
                                                  : NGX_LOG_NOTICE;

        ngx_log_error(level, log, 0, "cache guard: breaker \"%*s\" %s, %s",
                      rec->len, rec->name,
                      ngx_http_cache_guard_breaker_names[to], why);
    }
}


static void
ngx_http_cache_guard_breaker_clear(ngx_http_cache_guard_record_t *rec)
{
    ngx_uint_t  i;

    /* a closed breaker starts with a clean window */

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_MAX_WINDOW; i++) {
        rec->buckets[i] = 0;
    }
}
