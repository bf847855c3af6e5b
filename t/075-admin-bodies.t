# Admin request bodies (POST /warm, POST /bloom/NAME) are read as they
# come, split into lines and never stored whole nor written to a file: a
# Content-Length over the call's limit is refused with 413 before a byte of
# the body is read, a chunked body as soon as it passes the limit, and the
# worker answers other requests while a large body streams in.  Admin JSON
# is valid JSON whatever bytes a client sends.  Blocks count origin
# requests, read the filter back and parse every answer as strict JSON.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;
use Test::CacheGuard::Assert;

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(time);

# the limits of a call's body
sub warm_bytes  { return 1000 * (4096 + 2) }
sub bloom_bytes { return 16 * 1024 * 1024 }

guard_preamble(
    zone        => '8m',
    redis       => 'timeout=1s',
    http_config => "    cache_guard_bloom users capacity=100000 error_rate=0.01;\n",
    upstream    => 1,
    config      => <<'CONF' . guard_location(x_guard => undef),
    location /admin/ {
        cache_guard_admin;
        client_max_body_size 100m;
        client_body_buffer_size 8k;
    }
    location /plain {
        return 200 "plain\n";
    }
CONF
    user_files  => <<'LUA',
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0 }
LUA
    init        => 'origin_reset(); redis_flush();',
);

# strict: a byte that is not UTF-8 makes it fail
sub strict_json {
    my ($body) = @_;
    my $j = eval { JSON::PP->new->utf8->decode($body // '') };
    return $j // { invalid => $@ // 'no body' };
}

# a POST whose body the caller sends, on a connection of its own
sub open_post {
    my ($path, %headers) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ENV{TEST_NGINX_SERVER_PORT})
        or die "connect: $!";
    send_all($sock, "POST $path HTTP/1.1\r\nHost: localhost\r\n"
                    . "Connection: close\r\n"
                    . join('', map { "$_: $headers{$_}\r\n" } sort keys %headers)
                    . "\r\n");
    return $sock;
}

# false once the server closed the connection
sub send_all {
    my ($sock, $data) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($sock, $data, 65536, $off);
        return 0 unless defined $n;
        $off += $n;
    }
    return 1;
}

sub chunk { return sprintf("%x\r\n", length $_[0]) . "$_[0]\r\n" }

# the answer, or status 0 if none came in time
sub read_response {
    my ($sock, $timeout) = @_;
    my ($raw, $select, $deadline) = ('', IO::Select->new($sock), time + $timeout);
    while ((my $left = $deadline - time) > 0) {
        last unless $select->can_read($left);
        last unless sysread $sock, my $buf, 65536;
        $raw .= $buf;
        my $end = index($raw, "\r\n\r\n");
        if ($end >= 0 && $raw =~ /^Content-Length: (\d+)/mi) {
            last if length($raw) >= $end + 4 + $1;
        }
    }
    my ($status) = $raw =~ m{^HTTP/1\.1 (\d+)};
    my ($body) = $raw =~ /\r\n\r\n(.*)\z/s;
    return { status => $status // 0, body => $body // '', raw => $raw };
}

# a chunked POST of $size bytes of $line repeated, the last chunk held back
# until the answer came (or did not)
sub chunked_held_back {
    my ($path, $line, $size) = @_;
    my $sock = open_post($path, 'Transfer-Encoding' => 'chunked');
    my $piece = $line x int(65536 / length $line);
    my $sent = 0;
    while ($sent < $size) {
        last unless send_all($sock, chunk($piece));
        $sent += length $piece;
    }
    my $r = read_response($sock, 10 * slow());
    $r->{sent} = $sent;
    return $r;
}

run_tests();

__DATA__

=== TEST 1: a Content-Length over a call's limit gets 413 with the limit before any of the body is sent, even with Expect: 100-continue
--- check
for my $case (['/admin/warm', warm_bytes()],
              ['/admin/bloom/users', bloom_bytes()]) {
    my ($path, $limit) = @$case;
    my $sock = open_post($path, 'Content-Length' => $limit + 1,
                         Expect => '100-continue');
    my $r = read_response($sock, 10 * slow());
    is($r->{status}, 413, "$path: 413 with only the headers sent");
    unlike($r->{raw}, qr/^HTTP\/1\.1 100/, 'no 100 Continue first');
    like(strict_json($r->{body})->{error} // '', qr/^a body is $limit bytes at most/,
         'a JSON error with the limit') or diag($r->{raw});
}
is(origin_total(), 0, 'the origin saw nothing');
ok(!strict_json(http_get('/admin/bloom/users')->{body})->{loaded},
   'the filter got nothing');
--- no_error_log
[alert]



=== TEST 2: a chunked body is cut off with 413 as soon as it passes a limit: bytes, 1,000 URIs, 100,000 items; nothing is warmed or added
--- check
# blank lines: bytes but no URI
my ($wb, $bb) = (warm_bytes(), bloom_bytes());
my $r = chunked_held_back('/admin/warm', "\n", $wb + 65536);
is($r->{status}, 413, "warm: 413 after $r->{sent} bytes, before the body ended");
like(strict_json($r->{body})->{error} // '', qr/^a body is $wb bytes at most/,
     'with the byte limit') or diag($r->{raw});

my $sock = open_post('/admin/warm', 'Transfer-Encoding' => 'chunked');
send_all($sock, chunk(join '', map { "/many/$_\n" } 1 .. 1001));
$r = read_response($sock, 10 * slow());
is($r->{status}, 413, 'warm: 1,001 URIs: 413 before the body ended');
is(strict_json($r->{body})->{error}, '1000 URIs at most per call, nothing was warmed',
   'with the URI limit') or diag($r->{raw});

$r = chunked_held_back('/admin/bloom/users', "\n", $bb + 65536);
is($r->{status}, 413, "bloom: 413 after $r->{sent} bytes, before the body ended");
like(strict_json($r->{body})->{error} // '', qr/^a body is $bb bytes at most/,
     'with the byte limit') or diag($r->{raw});

$r = chunked_held_back('/admin/bloom/users', "item-x\n", 100_001 * 7);
is($r->{status}, 413, 'bloom: 100,001 items: 413 before the body ended');
is(strict_json($r->{body})->{error}, '100000 items at most per call, nothing was added',
   'with the item limit') or diag($r->{raw});

is(origin_total(), 0, 'the origin saw nothing');
my $info = strict_json(http_get('/admin/bloom/users')->{body});
ok(!$info->{loaded} && !$info->{items}, 'the filter got nothing');
--- no_error_log
[alert]



=== TEST 3: just under the limits: 1,000 URIs, a warm body of exactly the byte limit, 100,000 items
--- timeout: 120
--- check
my $r = http_request('POST', '/admin/warm?concurrency=32',
                     body => join('', map { "/u/$_\n" } 1 .. 1000), timeout => 120);
is($r->{status}, 200, '1,000 URIs: 200');
is(strict_json($r->{body})->{filled}, 1000, 'all filled') or diag($r->{body});
is(origin_total(), 1000, 'the origin saw each once');

my $wb = warm_bytes();
my $body = "/u/edge\n" . ("\n" x ($wb - 8));
is(length $body, $wb, "a body of $wb bytes");
$r = http_request('POST', '/admin/warm', body => $body, timeout => 60);
is($r->{status}, 200, 'at the byte limit: 200');
is(strict_json($r->{body})->{total}, 1, 'its one URI') or diag($r->{body});
is(http_request('POST', '/admin/warm', body => "$body\n")->{status}, 413,
   'one byte more: 413');

$r = http_request('POST', '/admin/bloom/users',
                  body => join('', map { "item-$_\n" } 1 .. 100_000), timeout => 60);
is($r->{status}, 200, '100,000 items: 200');
is(strict_json($r->{body})->{added}, 100_000, 'all added') or diag($r->{body});
ok(strict_json(http_get("/admin/bloom/users?item=item-$_")->{body})->{present},
   "item-$_ present") for 1, 50_000, 100_000;
--- no_error_log
a client request body is buffered to a temporary file
[error]
[alert]



=== TEST 4: while a large body streams in (one worker), the worker answers other requests; the items are added once the body ends, never stored in a file
--- check
my $line = 'i-' . ('x' x 94) . '-';
my $n = 80_000;
my @lines = map { "$line$_\n" } 1 .. $n;
my $sock = open_post('/admin/bloom/users', 'Transfer-Encoding' => 'chunked');
my $all = join '', @lines;
ok(length($all) > 7_000_000, 'a body of ' . length($all) . ' bytes');
my $held = 1000;
for (my $off = 0; $off < length($all) - $held; $off += 65536) {
    my $len = length($all) - $held - $off;
    send_all($sock, chunk(substr($all, $off, $len < 65536 ? $len : 65536)));
}
my $g = http_get('/plain', timeout => 10 * slow());
is($g->{status}, 200, 'a GET is answered while the POST body is unfinished');
my $t = strict_json(http_get("/admin/bloom/users?item=${line}1",
                             timeout => 10 * slow())->{body});
is($t->{present}, JSON::PP::false, 'and nothing is added before the body ends');
send_all($sock, chunk(substr($all, length($all) - $held)) . "0\r\n\r\n");
my $r = read_response($sock, 30 * slow());
is($r->{status}, 200, 'the POST ends: 200');
is(strict_json($r->{body})->{added}, $n, "$n items added") or diag($r->{raw});
ok(strict_json(http_get("/admin/bloom/users?item=$line$_")->{body})->{present},
   "item $_ present") for 1, 40_000, $n;
--- no_error_log
a client request body is buffered to a temporary file
[error]
[alert]



=== TEST 5: admin answers are valid JSON whatever the bytes: a key, an item, a filter name with 0xff 0xfe, a quote, a backslash, a newline
--- check
my $raw = "\xff\xfe\"q\\\n\x01\xc3\xa9";
my $want = "\x{ff}\x{fe}\"q\\\n\x{01}\x{e9}";
(my $enc = $raw) =~ s/([^A-Za-z0-9])/sprintf '%%%02X', ord $1/ge;

my $r = http_request('DELETE', "/admin/cache?key=$enc");
is($r->{status}, 200, 'a purge of that key: 200');
my $j = strict_json($r->{body});
is($j->{key}, $want, 'valid JSON, the key as it was: non-UTF-8 bytes as \u00XX, é kept')
    or diag($j->{invalid} // $r->{body});
like($r->{body}, qr/"\\u00ff\\u00fe\\"q\\\\\\n\\u0001\xc3\xa9"/, 'escaped so');

$r = http_request('DELETE', "/admin/cache?pattern=$enc*");
is(strict_json($r->{body})->{pattern}, "$want*", 'a pattern too')
    or diag($r->{body});

$r = http_get("/admin/bloom/users?item=$enc");
is(strict_json($r->{body})->{item}, $want, 'a Bloom item')
    or diag($r->{body});

$r = http_get("/admin/bloom/$enc");
is($r->{status}, 404, 'an unknown filter: 404');
is(strict_json($r->{body})->{error}, "unknown bloom filter \"$want\"",
   'its name in a valid JSON error') or diag($r->{body});

$r = http_get("/admin/breaker/$enc");
is($r->{status}, 404, 'an unknown breaker: 404');
is(strict_json($r->{body})->{error}, "unknown breaker \"$want\"",
   'its name in a valid JSON error') or diag($r->{body});
--- no_error_log
[alert]
