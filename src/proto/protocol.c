#include "protocol.h"

#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "difficulty.h"
#include "kupool/error.h"
#include "log.h"

int kp_protocol_init(kp_protocol *p, kp_job_book *jobs, kp_event_sink sink,
                     uint64_t min_interval_ms, uint32_t max_errors)
{
    memset(p, 0, sizeof(*p));
    p->jobs = jobs;
    p->sink = sink;
    p->min_interval_ms = min_interval_ms;
    p->max_errors = max_errors;
    p->next_seq = 1;

    /* A random node id keeps event ids unique across restarts and across scale-out nodes
     * without coordination: the stats store dedupes on them. */
    unsigned char raw[8];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return KP_EIO;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(p->node_id + 2 * i, 3, "%02x", raw[i]);
    return kp_hasher_init(&p->hasher);
}

void kp_protocol_free(kp_protocol *p)
{
    kp_hasher_free(&p->hasher);
    free(p->scratch);
    p->scratch = NULL;
    p->scratch_cap = 0;
}

unsigned kp_difficulty_bucket(uint64_t d)
{
    if (d <= 1)
        return 0;
    /* The smallest k with d <= 4^k: half the bit length of d - 1, rounded up. */
    unsigned bits = 64u - (unsigned)__builtin_clzll(d - 1);
    unsigned k = (bits + 1) / 2;
    return k < KP_DIFFICULTY_BUCKETS - 1 ? k : KP_DIFFICULTY_BUCKETS - 1;
}

void kp_protocol_set_difficulty(kp_protocol *p, uint64_t difficulty, kp_vardiff_params vardiff)
{
    kp_protocol_difficulty *pd = &p->difficulty;
    pd->vardiff = vardiff;
    pd->on = difficulty > 1 || vardiff.target_ms > 0;
    pd->start = vardiff.target_ms > 0 ? kp_vardiff_clamp(&vardiff, difficulty) : difficulty;
    if (pd->start < 1)
        pd->start = 1;
}

/* The histogram of authorized peers' difficulties: kept as peers come, change and go, so a scrape
 * reads 28 counters instead of walking every session. */
static void histogram_add(kp_protocol_difficulty *pd, uint64_t d)
{
    pd->sessions[kp_difficulty_bucket(d)]++;
    pd->sessions_sum += d;
}

static void histogram_remove(kp_protocol_difficulty *pd, uint64_t d)
{
    pd->sessions[kp_difficulty_bucket(d)]--;
    pd->sessions_sum -= d;
}

void kp_protocol_peer_free(kp_protocol *p, kp_peer *peer)
{
    if (peer->username)
        histogram_remove(&p->difficulty, peer->difficulty);
    kp_peer_free(peer);
}

/* {"id":null,"method":"set_difficulty","params":{"difficulty":D,"target":"<64 hex>"}}\n, put
 * together by hand: snprintf cost more than the rest of a changed session's broadcast step. */
static size_t format_set_difficulty(char *buf, uint64_t d)
{
    static const char head[] = "{\"id\":null,\"method\":\"set_difficulty\",\"params\":{\"difficulty\":";
    static const char mid[] = ",\"target\":\"";
    static const char tail[] = "\"}}\n";
    _Static_assert(sizeof head - 1 + 20 + sizeof mid - 1 + KP_TARGET_HEX + sizeof tail - 1 <
                       KP_SET_DIFFICULTY_MAX,
                   "a set_difficulty line fits its buffer");
    kp_u256 target;
    if (kp_difficulty_target(d, &target) != 0)
        return 0; /* d is validated by the config and the vardiff clamp: never here */
    size_t at = 0;
    memcpy(buf, head, sizeof head - 1);
    at += sizeof head - 1;
    at += kp_format_u64(buf + at, d);
    memcpy(buf + at, mid, sizeof mid - 1);
    at += sizeof mid - 1;
    char hex[KP_TARGET_HEX + 1];
    kp_u256_hex(&target, hex);
    memcpy(buf + at, hex, KP_TARGET_HEX);
    at += KP_TARGET_HEX;
    memcpy(buf + at, tail, sizeof tail - 1);
    at += sizeof tail - 1;
    buf[at] = '\0';
    return at;
}

size_t kp_protocol_job_sent(kp_protocol *p, kp_peer *peer, int64_t job_id, uint64_t mono_ms,
                            char *buf)
{
    kp_protocol_difficulty *pd = &p->difficulty;
    if (!pd->on || !peer->username)
        return 0;
    uint64_t d = peer->difficulty;
    if (pd->vardiff.target_ms > 0) {
        /* The first job of a session keeps its start difficulty: there is nothing to go by. */
        uint64_t next = peer->difficulty_told
                            ? kp_vardiff_retarget(&peer->vardiff, &pd->vardiff, d, mono_ms)
                            : d;
        /* A retarget that cannot be recorded is not made: the job keeps the last recorded
         * difficulty, so a submit for it is still judged at what the session was told. */
        if (kp_job_difficulty_record(&peer->job_difficulty, job_id, next, d) != 0)
            next = d;
        if (next != d) {
            histogram_remove(pd, d);
            histogram_add(pd, next);
            peer->difficulty = next;
            if (kp_log_enabled(KP_LOG_DEBUG))
                KP_DEBUG("app.vardiff", "difficulty changed", KP_QSTR("username", peer->username),
                         KP_UINT("from", d), KP_UINT("to", next), KP_INT("job_id", job_id));
        } else if (peer->difficulty_told) {
            return 0;
        }
    } else if (peer->difficulty_told) {
        return 0;
    }
    peer->difficulty_told = true;
    return format_set_difficulty(buf, peer->difficulty);
}

/* The scratch must hold a message's length (codec.h). Transports cap messages at -max_msg, so
 * this grows a few times at most and then never again. */
static int ensure_scratch(kp_protocol *p, size_t len)
{
    if (len <= p->scratch_cap)
        return 0;
    size_t cap = p->scratch_cap ? p->scratch_cap : 512;
    while (cap < len)
        cap *= 2;
    char *grown = realloc(p->scratch, cap);
    if (!grown)
        return KP_ENOMEM;
    p->scratch = grown;
    p->scratch_cap = cap;
    return 0;
}

static void set_reply(kp_reply *reply, bool has_id, int64_t id, kp_outcome oc)
{
    reply->outcome = oc;
    reply->len = kp_format_response(reply->line, has_id, id, oc);
}

static void handle_authorize(kp_protocol *p, kp_peer *peer, const kp_request *req, uint64_t mono_ms,
                             kp_reply *reply)
{
    if (peer->username) {
        set_reply(reply, true, req->id, KP_OUTCOME_ALREADY_AUTHORIZED);
        return;
    }
    kp_authorize_params ap;
    if (kp_authorize_params_get(req, &ap) != KP_OUTCOME_OK) {
        set_reply(reply, true, req->id, KP_OUTCOME_INVALID_USERNAME);
        reply->actions |= KP_REPLY_CLOSE;
        return;
    }
    peer->username = strndup(ap.username, ap.username_len);
    if (!peer->username) {
        KP_ERROR("app.acceptor", "out of memory authorizing");
        reply->actions |= KP_REPLY_CLOSE;
        reply->len = 0;
        return;
    }
    peer->difficulty = p->difficulty.start ? p->difficulty.start : 1;
    histogram_add(&p->difficulty, peer->difficulty);
    kp_vardiff_start(&peer->vardiff, mono_ms);
    set_reply(reply, true, req->id, KP_OUTCOME_OK);
    reply->actions |= KP_REPLY_SEND_JOB;
}

static int push_event(kp_protocol *p, const kp_peer *peer, const kp_submit_params *sp,
                      uint64_t difficulty)
{
    kp_event ev;
    /* "<node id>-<sequence>" without snprintf: this runs once per accepted submit. */
    size_t node_len = strlen(p->node_id);
    memcpy(ev.event_id, p->node_id, node_len);
    ev.event_id[node_len] = '-';
    kp_format_u64(ev.event_id + node_len + 1, p->next_seq++);
    /* Both lengths were validated by the codec (username <= 255, nonce <= 64 bytes). */
    memcpy(ev.username, peer->username, strlen(peer->username) + 1);
    memcpy(ev.client_nonce, sp->client_nonce, sp->client_nonce_len);
    ev.client_nonce[sp->client_nonce_len] = '\0';
    ev.job_id = sp->job_id;
    ev.ts_ms = kp_clock_wall_ms();
    ev.difficulty = difficulty;
    return p->sink.push(p->sink.ctx, &ev);
}

static void handle_submit(kp_protocol *p, kp_peer *peer, const kp_request *req, uint64_t mono_ms,
                          kp_reply *reply)
{
    kp_submit_env env = {
        .jobs = p->jobs,
        .hasher = &p->hasher,
        .mono_ms = mono_ms,
        .min_interval_ms = p->min_interval_ms,
        .fixed_difficulty = p->difficulty.vardiff.target_ms > 0 ? 0
                            : p->difficulty.start         ? p->difficulty.start
                                                          : 1,
    };
    kp_submit_params sp = {0};
    bool oom = false;
    uint64_t difficulty = 1;
    kp_outcome oc = kp_submit_check(peer, req, &env, &sp, &difficulty, &oom);
    if (oc == KP_OUTCOME_OK && push_event(p, peer, &sp, difficulty) != 0)
        oom = true;
    if (oc == KP_OUTCOME_OK && !oom) {
        p->difficulty.shares_sum += difficulty;
        if (p->difficulty.vardiff.target_ms > 0)
            kp_vardiff_share(&peer->vardiff, &p->difficulty.vardiff, difficulty, peer->difficulty,
                             mono_ms);
    }
    if (oom) {
        /* The submit can be neither recorded nor refused honestly: drop the session, the client
         * will resubmit elsewhere. Never answer "accepted" for an event we could not keep. */
        KP_ERROR("app.listener", "out of memory on submit; closing session",
                 KP_QSTR("username", peer->username));
        reply->actions |= KP_REPLY_CLOSE;
        reply->len = 0;
        reply->outcome = KP_OUTCOME_COUNT;
        return;
    }
    set_reply(reply, true, req->id, oc);
    p->submits[oc]++;
    if (oc == KP_OUTCOME_UNAUTHORIZED)
        reply->actions |= KP_REPLY_CLOSE;
    if (kp_log_enabled(KP_LOG_DEBUG))
        KP_DEBUG("app.listener", "submit", KP_QSTR("username", peer->username),
                 KP_INT("job_id", sp.job_id), KP_STR("outcome", kp_outcome_label(oc)));
}

void kp_protocol_handle(kp_protocol *p, kp_peer *peer, const char *msg, size_t len,
                        uint64_t mono_ms, kp_reply *reply)
{
    reply->actions = 0;
    reply->len = 0;
    reply->outcome = KP_OUTCOME_COUNT; /* until a response is set: e.g. out of memory, none */
    if (ensure_scratch(p, len) != 0) {
        KP_ERROR("app.listener", "out of memory parsing a message; closing session");
        reply->actions |= KP_REPLY_CLOSE;
        return;
    }
    kp_request req;
    kp_outcome oc = kp_request_parse(msg, len, p->scratch, p->scratch_cap, &req);
    if (oc == KP_OUTCOME_UNKNOWN_METHOD && !peer->username) {
        /* SPEC §2: anything but authorize before authorization is Unauthorized, and that check
         * comes first, as in the submit check order. A well-formed envelope is needed to get
         * here: garbage is still answered with what is wrong with it. */
        set_reply(reply, req.has_id, req.id, KP_OUTCOME_UNAUTHORIZED);
        reply->actions |= KP_REPLY_CLOSE;
    } else if (oc != KP_OUTCOME_OK) {
        set_reply(reply, req.has_id, req.id, oc);
    } else {
        if (req.method == KP_METHOD_AUTHORIZE)
            handle_authorize(p, peer, &req, mono_ms, reply);
        else
            handle_submit(p, peer, &req, mono_ms, reply);
        kp_request_free(&req);
    }

    if (reply->outcome >= KP_OUTCOME_COUNT)
        return;
    p->outcomes[reply->outcome]++;
    if (kp_outcome_is_malformed(reply->outcome)) {
        if (++peer->errors_in_row >= p->max_errors)
            reply->actions |= KP_REPLY_CLOSE;
    } else {
        peer->errors_in_row = 0;
    }
}
