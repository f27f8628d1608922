/* Tests for src/core/cidr.c: addresses (IPv4-mapped IPv6 folds to IPv4), CIDR syntax and its
 * refusals, list parsing, membership at prefix boundaries. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cidr.h"
#include "kupool/error.h"

static kp_ip ip(const char *text)
{
    kp_ip out;
    assert_int_equal(kp_ip_parse(text, &out), 0);
    return out;
}

static bool in(const char *cidr, const char *addr)
{
    kp_cidr c;
    assert_int_equal(kp_cidr_parse(cidr, &c), 0);
    kp_ip a = ip(addr);
    return kp_cidr_contains(&c, &a);
}

static void test_addresses(void **state)
{
    (void)state;
    kp_ip a = ip("10.1.2.3");
    assert_int_equal(a.family, 4);
    kp_ip m = ip("::ffff:10.1.2.3");
    assert_memory_equal(&a, &m, sizeof(a));
    char buf[64];
    kp_ip_format(&m, buf, sizeof(buf));
    assert_string_equal(buf, "10.1.2.3");
    kp_ip six = ip("2001:db8::1");
    assert_int_equal(six.family, 6);
    kp_ip_format(&six, buf, sizeof(buf));
    assert_string_equal(buf, "2001:db8::1");

    struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:192.0.2.9", &sa6.sin6_addr);
    kp_ip from;
    assert_int_equal(kp_ip_from_sockaddr((struct sockaddr *)&sa6, &from), 0);
    assert_int_equal(from.family, 4);
    struct sockaddr sa = {.sa_family = AF_UNIX};
    assert_int_equal(kp_ip_from_sockaddr(&sa, &from), KP_EINVAL);

    static const char *const bad[] = {"", "1.2.3", "1.2.3.4.5", "01.2.3.4", "256.1.1.1", "::g",
                                      "[::1]", "fe80::1%lo", " 1.2.3.4", "localhost"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(kp_ip_parse(bad[i], &from), KP_EINVAL);
}

static void test_cidr_syntax(void **state)
{
    (void)state;
    kp_cidr c;
    assert_int_equal(kp_cidr_parse("10.0.0.0/8", &c), 0);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(kp_cidr_parse("127.0.0.1", &c), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(kp_cidr_parse("::1", &c), 0);
    assert_int_equal(c.prefix, 128);
    assert_int_equal(kp_cidr_parse("0.0.0.0/0", &c), 0);
    assert_int_equal(kp_cidr_parse("::/0", &c), 0);
    assert_int_equal(kp_cidr_parse("::ffff:10.0.0.0/104", &c), 0);
    assert_int_equal(c.net.family, 4);
    assert_int_equal(c.prefix, 8);
    static const char *const bad[] = {"10.0.0.0/33", "10.1.2.3/8", "10.0.0.0/", "10.0.0.0/08",
                                      "10.0.0.0/-1", "10.0.0.0/8/8", "/8", "::/129",
                                      "2001:db8::1/64", "10.0.0.0/ 8", "::ffff:10.0.0.0/8",
                                      "10.0.0.0/1000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(kp_cidr_parse(bad[i], &c), KP_EINVAL);
}

static void test_contains(void **state)
{
    (void)state;
    assert_true(in("10.0.0.0/8", "10.255.255.255"));
    assert_false(in("10.0.0.0/8", "11.0.0.0"));
    assert_true(in("192.168.1.128/25", "192.168.1.128"));
    assert_false(in("192.168.1.128/25", "192.168.1.127"));
    assert_true(in("127.0.0.1", "127.0.0.1"));
    assert_false(in("127.0.0.1", "127.0.0.2"));
    assert_true(in("0.0.0.0/0", "203.0.113.7"));
    assert_false(in("0.0.0.0/0", "2001:db8::1")); /* families never mix */
    assert_true(in("2001:db8:1:2::/64", "2001:db8:1:2:ffff::1"));
    assert_false(in("2001:db8:1:2::/64", "2001:db8:1:3::1"));
    assert_true(in("2001:db8::/33", "2001:db8:7fff::"));
    assert_false(in("2001:db8::/33", "2001:db8:8000::"));
    assert_true(in("10.0.0.0/8", "::ffff:10.9.9.9"));
}

static void test_lists(void **state)
{
    (void)state;
    kp_cidr_list l;
    assert_int_equal(kp_cidr_list_parse("", &l), 0);
    assert_int_equal(l.count, 0);
    assert_int_equal(kp_cidr_list_parse("  ", &l), 0);
    assert_int_equal(l.count, 0);
    assert_int_equal(kp_cidr_list_parse("127.0.0.1, 10.0.0.0/8 ,::1", &l), 0);
    assert_int_equal(l.count, 3);
    kp_ip a = ip("10.2.3.4"), b = ip("::1"), c = ip("127.0.0.2");
    assert_true(kp_cidr_list_contains(&l, &a));
    assert_true(kp_cidr_list_contains(&l, &b));
    assert_false(kp_cidr_list_contains(&l, &c));
    assert_int_equal(kp_cidr_list_parse("10.0.0.0/8,", &l), KP_EINVAL);
    assert_int_equal(kp_cidr_list_parse(",10.0.0.0/8", &l), KP_EINVAL);
    assert_int_equal(kp_cidr_list_parse("10.0.0.0/8,,::1", &l), KP_EINVAL);
    assert_int_equal(kp_cidr_list_parse("10.0.0.0/8 ::1", &l), KP_EINVAL);

    char many[KP_CIDR_LIST_MAX * 16 + 32] = "";
    for (int i = 0; i <= KP_CIDR_LIST_MAX; i++) {
        char one[20];
        snprintf(one, sizeof(one), "%s10.0.%d.0/24", i ? "," : "", i);
        strcat(many, one);
    }
    assert_int_equal(kp_cidr_list_parse(many, &l), KP_EINVAL); /* one too many */
    *strrchr(many, ',') = '\0';
    assert_int_equal(kp_cidr_list_parse(many, &l), 0);
    assert_int_equal(l.count, KP_CIDR_LIST_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_cidr_syntax),
        cmocka_unit_test(test_contains),
        cmocka_unit_test(test_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
