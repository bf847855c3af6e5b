# Self-test of the TLS test infrastructure (Test::CacheGuard::TLS, the
# recording listener Test::CacheGuard::Recorder): the test PKI, redis-server
# speaking only TLS, and the checks the module's TLS tests will rely on,
# shown with redis-cli and openssl s_client (our module is not involved).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);

use Test::CacheGuard::Util qw(port_accepts process_alive wait_until);

BEGIN {
    for my $bin (qw(redis-server redis-cli openssl)) {
        next if grep { -x "$_/$bin" } split /:/, $ENV{PATH};
        plan skip_all => "$bin is not installed (make deps-test)";
    }
}

use Test::CacheGuard::TLS;
use Test::CacheGuard::Recorder;

my $t0 = time;
my $pki = tls_certs();
my $made = time - $t0;
ok(!grep({ !-s $pki->{$_} } keys %$pki), 'every PKI file is there')
    or diag explain $pki;
note sprintf 'PKI ready in %.2f s', $made;

subtest 'the PKI is made once and reused' => sub {
    my $mtime = (stat $pki->{server})[9];
    my $again = tls_certs();
    is_deeply($again, $pki, 'same paths');
    is((stat $again->{server})[9], $mtime, 'server.crt not made again');
    is("$ENV{TEST_NGINX_TLS_DIR}/ca.crt", $pki->{ca},
       '$TEST_NGINX_TLS_DIR names the PKI directory');
};

sub verify {
    my ($ca, $leaf) = @_;
    return scalar qx{openssl verify -CAfile '$ca' '$leaf' 2>&1};
}

sub x509 {
    my ($cert, @what) = @_;
    return scalar qx{openssl x509 -in '$cert' -noout @what 2>&1};
}

subtest 'the certificates hold what the tests need' => sub {
    like(x509($pki->{server}, '-ext subjectAltName'),
         qr/DNS:redis\.test, IP Address:127\.0\.0\.1/, 'server SAN');
    like(x509($pki->{server}, '-ext extendedKeyUsage'),
         qr/Server Authentication, TLS Web Client Authentication/,
         'server EKU serverAuth, clientAuth');
    like(x509($pki->{wrong_name}, '-ext subjectAltName'),
         qr/^\s*DNS:other\.test\s*$/m, 'wrong-name SAN: other.test only');
    like(x509($pki->{expired}, '-enddate'), qr/notAfter=Jan  2 00:00:00 2020/,
         'expired in 2020');
    for my $pair ([server => 'ca'], [client => 'ca'], [wrong_name => 'ca'],
                  [untrusted => 'other_ca'], [other_client => 'other_ca']) {
        my ($leaf, $ca) = @$pair;
        like(verify($pki->{$ca}, $pki->{$leaf}), qr/: OK$/,
             "$leaf is signed by $ca");
    }
    unlike(verify($pki->{ca}, $pki->{untrusted}), qr/: OK$/,
           'untrusted is not signed by the test CA');
};

my ($good, $wrong, $expired, $mutual, $untrusted) = map { tls_port($_) } 0 .. 4;
$t0 = time;
my %pid = (
    $good      => tls_redis_start(port => $good),
    $wrong     => tls_redis_start(port => $wrong, cert => 'wrong_name'),
    $expired   => tls_redis_start(port => $expired, cert => 'expired'),
    $mutual    => tls_redis_start(port => $mutual, auth_clients => 'yes'),
    $untrusted => tls_redis_start(port => $untrusted, cert => 'untrusted'),
);
note sprintf 'five TLS servers up in %.2f s', time - $t0;

my %client = (cert => $pki->{client}, key => $pki->{client_key});

subtest 'redis-cli over TLS: the CA decides' => sub {
    is_deeply([tls_redis_cli(port => $good, ca => $pki->{ca})], [0, 'PONG'],
              'PING with the right CA');
    my ($rc, $out) = tls_redis_cli(port => $good, ca => $pki->{other_ca});
    isnt($rc, 0, 'the wrong CA fails');
    like($out, qr/certificate verify failed/, '... on verification');
    ($rc, $out) = tls_redis_cli(port => $untrusted, ca => $pki->{ca});
    like($out, qr/certificate verify failed/,
         'a server certificate of another CA fails');
    ($rc, $out) = tls_redis_cli(port => $expired, ca => $pki->{ca});
    like($out, qr/certificate verify failed/, 'the expired one fails');
    is_deeply([tls_redis_cli(port => $wrong, ca => $pki->{ca})], [0, 'PONG'],
              'the wrong name passes redis-cli (it checks no name)');
    my $plain = qx{redis-cli -h 127.0.0.1 -p $good PING 2>&1};
    unlike($plain, qr/PONG/, 'a plain-text client gets nothing');
};

subtest 'openssl s_client: name, IP and dates' => sub {
    my @cases = (
        [$good,    hostname => 'redis.test', 0,  'ok'],
        [$good,    ip => '127.0.0.1',        0,  'ok'],
        [$wrong,   hostname => 'redis.test', 62, 'hostname mismatch'],
        [$wrong,   ip => '127.0.0.1',        64, 'IP address mismatch'],
        [$expired, hostname => 'redis.test', 10, 'certificate has expired'],
    );
    for my $case (@cases) {
        my ($port, $k, $v, $code, $text) = @$case;
        my ($got, $got_text, $out) =
            tls_s_client(port => $port, ca => $pki->{ca}, $k => $v);
        is($got, $code, "port $port, $k $v: verify code $code")
            or diag $out;
        is($got_text, $text, "... '$text'");
    }
    my ($code) = tls_s_client(port => $good, ca => $pki->{other_ca},
                              hostname => 'redis.test');
    ok($code, "the wrong CA does not verify (code $code)");
};

subtest '--tls-auth-clients yes wants a client certificate of its CA' => sub {
    my ($rc, $out) = tls_redis_cli(port => $mutual, ca => $pki->{ca});
    isnt($rc, 0, 'refused without a client certificate');
    unlike($out, qr/PONG/, '... no PONG');
    is_deeply([tls_redis_cli(port => $mutual, ca => $pki->{ca}, %client)],
              [0, 'PONG'], 'PONG with the client certificate');
    ($rc, $out) = tls_redis_cli(port => $mutual, ca => $pki->{ca},
        cert => $pki->{other_client}, key => $pki->{other_client_key});
    unlike($out, qr/PONG/, 'refused with a client certificate of another CA');
    is_deeply([tls_redis_cli(port => $good, ca => $pki->{ca})], [0, 'PONG'],
              '--tls-auth-clients no needs none');
};

subtest 'the recording listener' => sub {
    my ($plain, $tls, $quiet) = map { recorder_port($_) } 0 .. 2;
    my @pids = (recorder_start(port => $plain, mode => 'close-after-read'),
                recorder_start(port => $tls, mode => 'close-after-read'),
                recorder_start(port => $quiet));
    is(recorder_bytes($plain), '', 'nothing recorded yet');
    is(recorder_connections($plain), 0, 'no connection made by starting it');

    my $out = qx{redis-cli -h 127.0.0.1 -p $plain PING 2>&1};
    ok(wait_until(sub { recorder_bytes($plain) =~ /\r\n\z/ }, 10),
       'redis-cli in clear was recorded');
    is(recorder_bytes($plain), "*1\r\n\$4\r\nPING\r\n", '... byte for byte');
    ok(resp_in_clear(recorder_bytes($plain)), 'resp_in_clear sees it');
    ok(!tls_client_hello(recorder_bytes($plain)), '... it is no ClientHello');

    my ($rc) = tls_redis_cli(port => $tls, ca => $pki->{ca});
    isnt($rc, 0, 'redis-cli over TLS fails on the listener');
    my $hello = recorder_bytes($tls);
    ok(tls_client_hello($hello), 'a ClientHello was recorded')
        or diag unpack 'H*', substr $hello, 0, 16;
    ok(!resp_in_clear($hello), 'no RESP in clear');
    unlike($hello, qr/PING/, 'no PING anywhere');
    # redis-cli tries a second time: each connection is read, then closed
    # by the listener.
    my $events = qr/^(?:CONNECT (\d+),READ \1 (\d+),CLOSE \1 server \2,?)+$/;
    ok(wait_until(sub { join(',', recorder_events($tls)) =~ $events }, 10),
       'events: connect, read, closed by the listener')
        or diag join "\n", recorder_events($tls);

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $quiet, Timeout => 5);
    ok($sock, 'connected to the silent one');
    syswrite $sock, "GET cg:/a\r\n";
    ok(wait_until(sub { recorder_bytes($quiet) eq "GET cg:/a\r\n" }, 10),
       'inline GET recorded');
    ok(resp_in_clear(recorder_bytes($quiet)), 'resp_in_clear sees inline GET');
    ok(!IO::Select->new($sock)->can_read(0.3), 'it answers nothing')
        or diag 'read: ' . (sysread($sock, my $b, 100) // 'error');
    ok(port_accepts($quiet), 'and still accepts');
    close $sock;
    ok(wait_until(sub { grep { /^CLOSE 1 peer 11$/ } recorder_events($quiet) },
                  10), 'the peer closing is recorded');

    recorder_stop($plain);
    ok(!port_accepts($plain), 'recorder_stop: the port refuses');
    recorder_stop_all();
    ok(!port_accepts($_), "recorder port $_ refuses after stop")
        for $plain, $tls, $quiet;
    ok(!kill(0, $_), "recorder pid $_ is gone (kill 0)") for @pids;
};

subtest 'stopping the servers' => sub {
    $t0 = time;
    tls_redis_stop($good);
    ok(!port_accepts($good), 'port refuses at once after tls_redis_stop');
    tls_redis_stop_all();
    note sprintf 'stopped in %.2f s', time - $t0;
    for my $port (sort keys %pid) {
        ok(!kill(0, $pid{$port}), "redis-server on $port is gone (kill 0)");
        ok(!port_accepts($port), "port $port refuses");
    }
    is_deeply({tls_redis_pids()}, {}, 'nothing left in the table');
};

done_testing();
