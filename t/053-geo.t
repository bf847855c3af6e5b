# GeoIP: cache_guard_geoip maps a MaxMind DB; policies deny or allow
# countries and hooks read r.geo.  t/lib/mkmmdb.pl writes the database
# (see there for its networks: 10.1/16 is XX, 10.2/16 is YY, 192.0.2/24 is
# ZZ without an ASN, 127.0.0.1 is not in it); every block finds a copy at
# html/geo.mmdb.  The client address comes from X-Forwarded-For through the
# realip module, as behind a load balancer.
#
# Tests 1-6 need only the directive (ngx_http_cache_guard_geo.c); tests 7-12
# also need the policy's geo field and the access-phase check (policy.c,
# access.c) or r.geo in hooks (policy.c): each says which.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;

use File::Copy qw(copy);
use File::Temp qw(tempdir);

my $dir = tempdir('cache-guard-geo-XXXXXX', TMPDIR => 1, CLEANUP => 1);
$main::mmdb = "$dir/geo.mmdb";
$main::mmdb4 = "$dir/geo4.mmdb";
mkmmdb($main::mmdb);
mkmmdb('-4', $main::mmdb4);

sub mkmmdb {
    system($^X, 't/lib/mkmmdb.pl', @_) == 0
        or die "t/lib/mkmmdb.pl @_ failed\n";
}

sub install_mmdb {
    my ($from) = @_;
    copy($from, "$ENV{TEST_NGINX_HTML_DIR}/geo.mmdb")
        or die "cannot copy $from: $!\n";
}

# The IPv4 database with its first search tree node pointing past the end:
# it opens, and every lookup of 0.0.0.0/1 fails.
sub install_corrupt_mmdb {
    my $file = "$ENV{TEST_NGINX_HTML_DIR}/geo.mmdb";
    install_mmdb($main::mmdb4);
    open my $fh, '+<:raw', $file or die "$file: $!\n";
    print {$fh} "\xff";
    close $fh or die "$file: $!\n";
}

# Mappings of html/geo.mmdb in the nginx master.
sub master_mappings {
    my $pid = nginx_pid();
    open my $fh, '<', "/proc/$pid/maps" or die "/proc/$pid/maps: $!\n";
    return scalar grep { m{/html/geo\.mmdb$} } <$fh>;
}

guard_preamble(
    setup    => 'install_mmdb($main::mmdb);',
    zone     => '1m',
    upstream => 1,
    init     => 'origin_reset();',
);

run_tests();

__DATA__

=== TEST 1: smoke test: a valid database loads and nginx serves
--- http_config
    cache_guard_geoip $TEST_NGINX_HTML_DIR/geo.mmdb;
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_body
ok
--- no_error_log
[error]
[alert]
[emerg]
[warn]



=== TEST 2: a relative path is taken from the prefix
--- http_config
    cache_guard_geoip html/geo.mmdb;
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_body
ok
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 3: a reload unmaps the old database: the master maps it once
--- skip_valgrind
--- http_config
    cache_guard_geoip html/geo.mmdb;
--- config
    location /t {
        return 200 "ok\n";
    }
--- check
is(master_mappings(), 1, 'the master maps the database once');
ok(nginx_reload(), "reload $_") for 1 .. 3;
is(master_mappings(), 1, 'still once after three reloads');
is(http_get('/t')->{body}, "ok\n", 'nginx serves');
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 4: a missing database makes nginx -t fail, naming the full path
--- http_config
    cache_guard_geoip html/nosuch.mmdb;
--- config
--- must_die
--- error_log
cache guard: cannot open geoip database "$TEST_NGINX_HTML_DIR/nosuch.mmdb": Error opening the specified MaxMind DB file (2: No such file or directory)



=== TEST 5: a file that is not a MaxMind DB makes nginx -t fail
--- http_config
    cache_guard_geoip $TEST_NGINX_HTML_DIR/garbage.mmdb;
--- config
--- user_files
>>> garbage.mmdb
this is not a MaxMind DB, just text that happens to end in .mmdb
--- must_die
--- error_log
cache guard: cannot open geoip database "$TEST_NGINX_HTML_DIR/garbage.mmdb": The MaxMind DB file contains invalid metadata



=== TEST 6: a second cache_guard_geoip is refused
--- http_config
    cache_guard_geoip $TEST_NGINX_HTML_DIR/geo.mmdb;
    cache_guard_geoip $TEST_NGINX_HTML_DIR/geo.mmdb;
--- config
--- must_die
--- error_log
"cache_guard_geoip" directive is duplicate



=== TEST 7: deny_countries: XX is refused before the origin, others pass
Needs the policy's geo field and the access-phase handler that applies it.
--- http_config
    cache_guard_geoip $TEST_NGINX_HTML_DIR/geo.mmdb;
--- config
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;

    location /x/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> p.lua
return { geo = { deny_countries = { "XX" }, status = 403 } }
--- request eval
["GET /x/a", "GET /x/v6", "GET /x/b", "GET /x/c", "GET /x/d"]
--- more_headers eval
["X-Forwarded-For: 10.1.2.3",       # XX: the policy status
 "X-Forwarded-For: 2001:db8::1",    # XX over IPv6: refused
 "X-Forwarded-For: 10.2.3.4",       # YY: served
 "X-Forwarded-For: 192.0.2.9",      # ZZ: served
 undef]                             # not in the database: served
--- error_code eval
[403, 403, 200, 200, 200]
--- response_headers eval
["X-Guard: INVALID", undef, undef, undef, undef]
--- response_body_like eval
[qr/^\{\s*"error"\s*:/, undef, qr/^\{"path":"\/x\/b","n":1,/, undef, undef]
--- check
is(origin_count('/x/a'), 0, 'XX: the origin saw nothing');
is(origin_count('/x/v6'), 0, 'XX over IPv6: the origin saw nothing');
is(origin_count('/x/b'), 1, 'YY: one origin request');
is(origin_count('/x/d'), 1, 'unknown: one origin request');
--- no_error_log
[error]
[alert]
geoip lookup failed



=== TEST 8: allow_countries: only YY passes; unknown addresses are refused
Needs the policy's geo field and the access-phase handler that applies it.
--- http_config
    cache_guard_geoip $TEST_NGINX_HTML_DIR/geo.mmdb;
--- config
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;

    location /x/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> p.lua
return { geo = { allow_countries = { "YY" }, status = 451 } }
--- request eval
["GET /x/b", "GET /x/a", "GET /x/c", "GET /x/d"]
--- more_headers eval
["X-Forwarded-For: 10.2.3.4",       # YY: served
 "X-Forwarded-For: 10.1.2.3",       # XX: refused
 "X-Forwarded-For: 192.0.2.9",      # ZZ: refused
 undef]                             # unknown (127.0.0.1): refused
--- error_code eval
[200, 451, 451, 451]
--- response_headers eval
[undef, "X-Guard: INVALID", "X-Guard: INVALID", "X-Guard: INVALID"]
--- check
is(origin_count('/x/b'), 1, 'YY: one origin request');
is(origin_count($_), 0, "$_: the origin saw nothing") for qw(/x/a /x/c /x/d);
--- no_error_log
[error]
[alert]



=== TEST 9: an IPv4-only database: an IPv6 client is unknown, not an error
Needs the policy's geo field and the access-phase handler that applies it.
--- setup
install_mmdb($main::mmdb4);
--- http_config
    cache_guard_geoip $TEST_NGINX_HTML_DIR/geo.mmdb;
--- config
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;

    location /x/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
    }
--- user_files
>>> p.lua
return { geo = { deny_countries = { "XX" }, status = 403 } }
--- request eval
["GET /x/a", "GET /x/v6"]
--- more_headers eval
["X-Forwarded-For: 10.1.2.3", "X-Forwarded-For: 2001:db8::1"]
--- error_code eval
[403,    # XX over IPv4: refused
 200]    # IPv6 in an IPv4 database: unknown, so served
--- no_error_log
[error]
[alert]
geoip lookup failed



=== TEST 10: a corrupt database: the address is unknown, the error logged once
Needs the policy's geo field and the access-phase handler that applies it.
--- setup
install_corrupt_mmdb();
--- http_config
    cache_guard_geoip $TEST_NGINX_HTML_DIR/geo.mmdb;
--- config
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;

    location /x/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
    }
--- user_files
>>> p.lua
return { geo = { deny_countries = { "XX" }, status = 403 } }
--- request eval
["GET /x/a", "GET /x/b"]
--- more_headers
X-Forwarded-For: 10.1.2.3
--- error_code: 200
--- check
my @lines = error_log_since_block()
    =~ /\[warn\].*geoip lookup failed: .*search tree is corrupt/g;
is(scalar @lines, 1, 'two failures, one line in the log');
--- no_error_log
[error]
[alert]



=== TEST 11: a key hook reads r.geo.country; nil for an unknown address
Needs function-valued keys and r.geo in hooks.
--- http_config
    cache_guard_geoip $TEST_NGINX_HTML_DIR/geo.mmdb;
--- config
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;

    location /x {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Key $cache_guard_key always;
    }
--- user_files
>>> p.lua
return {
  key = function(r) return r.uri .. ":" .. (r.geo.country or "none") end,
}
--- request eval
["GET /x", "GET /x", "GET /x"]
--- more_headers eval
["X-Forwarded-For: 10.1.2.3", "X-Forwarded-For: 10.2.3.4", undef]
--- response_headers eval
["X-Key: /x:XX", "X-Key: /x:YY", "X-Key: /x:none"]
--- no_error_log
[error]
[alert]



=== TEST 12: r.geo has the continent and the ASN; a missing field is nil
Needs function-valued keys and r.geo in hooks.
--- http_config
    cache_guard_geoip $TEST_NGINX_HTML_DIR/geo.mmdb;
--- config
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;

    location /x {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Key $cache_guard_key always;
    }
--- user_files
>>> p.lua
return {
  key = function(r)
    local g = r.geo
    return table.concat({ r.uri, g.country or "-", g.continent or "-",
                          tostring(g.asn or "-") }, ":")
  end,
}
--- request eval
["GET /x", "GET /x", "GET /x"]
--- more_headers eval
["X-Forwarded-For: 10.1.2.3", "X-Forwarded-For: 192.0.2.9", undef]
--- response_headers eval
["X-Key: /x:XX:EU:64500",
 "X-Key: /x:ZZ:NA:-",       # 192.0.2.9 has no ASN
 "X-Key: /x:-:-:-"]         # 127.0.0.1
--- no_error_log
[error]
[alert]



=== TEST 13: a policy with geo rules and no database is refused
--- config
    location /x/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
    }
--- user_files
>>> p.lua
return { geo = { deny_countries = { "XX" } } }
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:\d+: geo needs a database}



=== TEST 14: a corrupt database: after the 10 s quiet interval the next failure is logged again, with the same text
Needs the policy's geo field and the access-phase handler that applies it.
The warning of a later failure is the first one's line: nothing is added
to it (issue 11 must not change the log).
--- setup
install_corrupt_mmdb();
--- http_config
    cache_guard_geoip $TEST_NGINX_HTML_DIR/geo.mmdb;
--- config
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;

    location /x/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
    }
--- user_files
>>> p.lua
return { geo = { deny_countries = { "XX" } } }
--- timeout: 30
--- check
my $h = { 'X-Forwarded-For' => '10.1.2.3' };
is(http_get("/x/$_", headers => $h)->{status}, 200, "failure $_: served")
    for 1 .. 2;
sleep 11;
is(http_get('/x/3', headers => $h)->{status}, 200, 'failure 3: served');
my @lines = error_log_since_block() =~ /^(.*\[warn\].*geoip lookup failed.*)$/mg;
is(scalar @lines, 2, 'the first failure and the one after the interval logged');
like($_, qr/geoip lookup failed: [^,(]*search tree is corrupt[^,(]*, client: /,
     'the warning as before: the error, then the client') for @lines;
--- no_error_log
[error]
[alert]
