/* Baseline for bench/backends.sh: the fastest this machine's RabbitMQ takes KuPool-shaped
 * messages from one librabbitmq-c connection in the confirm mode src/mq_rabbit.c uses.
 *
 *   raw_rabbit_publish AMQP_URL QUEUE COUNT BATCH [EVENTS_PER_MESSAGE]
 *
 * With EVENTS_PER_MESSAGE > 1 (issue 12), each message is an NDJSON body of that many event
 * lines (content_type application/x-ndjson), as -mq_batch publishes them; COUNT and BATCH still
 * count events, and per_second is events per second.
 *
 * Declares QUEUE durable, publishes COUNT persistent JSON messages (delivery_mode 2,
 * content_type application/json, a ~200-byte body like a SPEC §3 event) in batches of BATCH, and
 * after each batch waits for the broker's basic.ack frames covering it — publish is "done" only
 * when confirmed, as in the server. Deletes the queue at the end. Prints one line:
 *   raw_rabbit_publish messages=N seconds=S per_second=R
 * Exit status 1 on any broker error (with the library's message). */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die_on(amqp_rpc_reply_t r, const char *what)
{
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return;
    fprintf(stderr, "raw_rabbit_publish: %s failed (reply type %d, %s)\n", what, (int)r.reply_type,
            r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ? amqp_error_string2(r.library_error)
                                                            : "server exception");
    exit(1);
}

/* Reads frames until every delivery tag up to `last` is confirmed. */
static void wait_confirms(amqp_connection_state_t conn, uint64_t last)
{
    uint64_t confirmed = 0;
    while (confirmed < last) {
        amqp_frame_t frame;
        int rc = amqp_simple_wait_frame(conn, &frame);
        if (rc != AMQP_STATUS_OK) {
            fprintf(stderr, "raw_rabbit_publish: waiting for confirms: %s\n", amqp_error_string2(rc));
            exit(1);
        }
        if (frame.frame_type != AMQP_FRAME_METHOD)
            continue;
        if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            const amqp_basic_ack_t *ack = frame.payload.method.decoded;
            /* `multiple` covers every tag up to delivery_tag; a single ack covers one. Tags are
             * acknowledged in order on one channel, so the highest seen is the watermark. */
            if (ack->delivery_tag > confirmed)
                confirmed = ack->delivery_tag;
        } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            fprintf(stderr, "raw_rabbit_publish: the broker refused a message (nack)\n");
            exit(1);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: raw_rabbit_publish AMQP_URL QUEUE COUNT BATCH [EVENTS_PER_MESSAGE]\n");
        return 2;
    }
    char *url = strdup(argv[1]);
    const char *queue = argv[2];
    long count = atol(argv[3]), batch = atol(argv[4]), per = argc == 6 ? atol(argv[5]) : 1;
    if (!url || count <= 0 || batch <= 0 || per <= 0 || per > 4096) {
        fprintf(stderr, "raw_rabbit_publish: COUNT and BATCH must be positive\n");
        return 2;
    }
    struct amqp_connection_info info;
    if (amqp_parse_url(url, &info) != AMQP_STATUS_OK) {
        fprintf(stderr, "raw_rabbit_publish: bad URL %s\n", argv[1]);
        return 2;
    }
    if (!info.vhost || !info.vhost[0])
        info.vhost = "/"; /* "amqp://host/" names the default vhost, as in the server */
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    if (!sock || amqp_socket_open(sock, info.host, info.port) != AMQP_STATUS_OK) {
        fprintf(stderr, "raw_rabbit_publish: cannot connect to %s:%d\n", info.host, info.port);
        return 1;
    }
    die_on(amqp_login(conn, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user,
                      info.password),
           "login");
    amqp_channel_open(conn, 1);
    die_on(amqp_get_rpc_reply(conn), "channel.open");
    amqp_confirm_select(conn, 1);
    die_on(amqp_get_rpc_reply(conn), "confirm.select");
    amqp_bytes_t qname = amqp_cstring_bytes(queue);
    amqp_queue_declare(conn, 1, qname, 0, 1, 0, 0, amqp_empty_table);
    die_on(amqp_get_rpc_reply(conn), "queue.declare");

    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG,
        .delivery_mode = 2,
        .content_type = amqp_cstring_bytes(per > 1 ? "application/x-ndjson" : "application/json"),
    };
    char *body = malloc((size_t)per * 512);
    if (!body)
        return 1;
    double start = now_s();
    uint64_t tag = 0;
    for (long sent = 0; sent < count;) {
        long n = count - sent < batch ? count - sent : batch;
        long messages = 0;
        for (long i = 0; i < n; messages++) {
            size_t len = 0;
            for (long k = 0; k < per && i < n; k++, i++, sent++) {
                len += (size_t)snprintf(body + len, 512,
                                        "{\"event_id\":\"00000000deadbeef-%ld\",\"username\":\"user%ld\","
                                        "\"job_id\":%ld,\"client_nonce\":\"%016lx\","
                                        "\"ts\":\"2026-11-26T02:00:00.000Z\"}%s",
                                        sent, sent % 100, sent / 1000,
                                        (unsigned long)sent * 2654435761u, per > 1 ? "\n" : "");
            }
            int rc = amqp_basic_publish(conn, 1, amqp_empty_bytes, qname, 0, 0, &props,
                                        (amqp_bytes_t){.len = len, .bytes = body});
            if (rc != AMQP_STATUS_OK) {
                fprintf(stderr, "raw_rabbit_publish: publish: %s\n", amqp_error_string2(rc));
                return 1;
            }
        }
        tag += (uint64_t)messages;
        wait_confirms(conn, tag);
    }
    double seconds = now_s() - start;
    amqp_queue_delete(conn, 1, qname, 0, 0);
    die_on(amqp_get_rpc_reply(conn), "queue.delete");
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    free(url);
    free(body);
    printf("raw_rabbit_publish messages=%ld seconds=%.3f per_second=%.0f\n", count, seconds,
           (double)count / seconds);
    return 0;
}
