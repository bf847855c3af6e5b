# Self-test of the Sentinel test infrastructure (Test::CacheGuard::Sentinel):
# one master, two replicas and three sentinels on loopback, a kill -9
# failover, SENTINEL FAILOVER, the killed master back as a replica, and no
# process left behind, also when the test dies.  redis-cli's protocol only
# (Test::CacheGuard::Redis::redis_at); our module is not involved.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time);

use Test::CacheGuard::Util qw(port_accepts wait_until repo_root);

BEGIN {
    for my $bin (qw(redis-server redis-sentinel)) {
        next if grep { -x "$_/$bin" } split /:/, $ENV{PATH};
        plan skip_all => "$bin is not installed (make deps-test)";
    }
}

use Test::CacheGuard::Redis qw(redis_at);
use Test::CacheGuard::Sentinel;

my $BOUND = 30;    # seconds, for a loaded 2-core machine
my ($first, @replicas) = redis_node_ports();
my %all_pids;

my $t0 = time;
my $master = sentinel_start();
diag sprintf 'master, 2 replicas and 3 sentinels ready in %.2f s', time - $t0;
%all_pids = sentinel_pids();
is($master, $first, 'the first node is the master');
is(scalar keys %all_pids, 6, 'six processes');
is($ENV{TEST_NGINX_SENTINEL_ADDRS},
   join(' ', map { "127.0.0.1:$_" } sentinel_ports()),
   '$TEST_NGINX_SENTINEL_ADDRS lists the sentinels');

subtest 'the sentinels know the topology' => sub {
    for my $i (0 .. 2) {
        is_deeply([master_addr($i)], ['127.0.0.1', $master],
                  "sentinel $i names the master");
        my $replicas = sentinel_cmd($i, 'SENTINEL', 'replicas', 'cg');
        is(scalar @$replicas, 2, "sentinel $i knows both replicas");
        my $others = sentinel_cmd($i, 'SENTINEL', 'sentinels', 'cg');
        is(scalar @$others, 2, "sentinel $i knows the two others");
    }
    is_deeply([role($master)], ['master'], 'ROLE master');
    is_deeply([role($_)], ['slave', $master, 'connected'],
              "ROLE of $_: replica of the master") for @replicas;
};

subtest 'SET on the master, GET on a replica' => sub {
    is(redis_at($master, 'SET', 'k1', 'v1'), 'OK', 'SET');
    ok(wait_until(sub { (redis_at($_, 'GET', 'k1') // '') eq 'v1' }, $BOUND),
       "GET k1 on replica $_") for @replicas;
    eval { redis_at($replicas[0], 'SET', 'x', 'y') };
    like($@, qr/READONLY/, 'a replica refuses writes');
};

my $killed;
subtest 'kill -9 of the master: a replica is promoted' => sub {
    $t0 = time;
    $killed = kill_master();
    is($killed, $master, 'the master was killed');
    ok(!kill(0, $all_pids{$killed}), '... its process is gone');
    ok(!port_accepts($killed), '... its port refuses');
    my $new = wait_for_promotion($killed, $BOUND);
    my $took = time - $t0;
    diag sprintf 'kill -9 to an agreed, answering new master: %.2f s', $took;
    ok($took < $BOUND, "promoted within ${BOUND}s");
    ok((grep { $_ == $new } @replicas), "the new master $new was a replica");
    is_deeply([master_addr($_)], ['127.0.0.1', $new], "sentinel $_ agrees")
        for 0 .. 2;
    is(redis_at($new, 'GET', 'k1'), 'v1', 'the data is there');
    is(redis_at($new, 'SET', 'k2', 'v2'), 'OK',
       'writes work on the new master');
    my ($other) = grep { $_ != $new } @replicas;
    ok(eval { wait_for_replica($other, $new, $BOUND) },
       "the other replica follows the new master") or diag $@;
    $master = $new;
};

# Sentinel turns a node that says it is a master, but should be a replica,
# into one only after it has reported so for 8 s (4 hello periods): the
# demoted master and the killed one restarted as it was wait together.
subtest 'SENTINEL FAILOVER; the killed master back as it was' => sub {
    $t0 = time;
    my $old = sentinel_failover($BOUND);
    is($old, $master, 'asked while the master was the promoted one');
    my $new = wait_for_promotion($old, $BOUND);
    my $promoted = time;
    diag sprintf 'SENTINEL FAILOVER to an agreed new master: %.2f s',
        $promoted - $t0;
    isnt($new, $old, "a new master: $new");
    is(redis_at($new, 'SET', 'k3', 'v3'), 'OK', 'writes work on the new one');

    my $pid = restart_node($killed);
    ok($pid && kill(0, $pid), "the killed master ($killed) restarted");
    $all_pids{"$killed+"} = $pid;
    is_deeply([role($killed)], ['master'], '... as a master, empty');

    ok(wait_until(sub {
        !eval { redis_at($old, 'SET', 'x', 'y'); 1 } && $@ =~ /READONLY/
    }, $BOUND), 'the demoted master refuses writes (READONLY)');
    diag sprintf 'the demoted master took writes for %.2f s after the '
        . 'sentinels agreed', time - $promoted;
    for my $port ($old, $killed) {
        ok(eval { wait_for_replica($port, $new, $BOUND) },
           "$port becomes a replica of the new master") or diag $@;
        ok(wait_until(sub { (redis_at($port, 'GET', 'k3') // '') eq 'v3' },
                      $BOUND), '... and has the data written since');
    }
    diag sprintf 'both replicas of the new master %.2f s after the '
        . 'sentinels agreed', time - $promoted;
    ok(wait_until(sub {
        my @ok = grep { my %h = @$_; $h{flags} eq 'slave' }
                 @{ sentinel_cmd(0, 'SENTINEL', 'replicas', 'cg') };
        return @ok == 2;
    }, $BOUND), 'the sentinels list two healthy replicas');
    $master = $new;
};

subtest 'stop_all leaves nothing behind' => sub {
    $t0 = time;
    sentinel_stop_all();
    note sprintf 'stopped in %.2f s', time - $t0;
    ok(!kill(0, $all_pids{$_}), "pid $all_pids{$_} ($_) is gone (kill 0)")
        for sort keys %all_pids;
    ok(!port_accepts($_), "port $_ refuses")
        for redis_node_ports(), sentinel_ports();
    is_deeply({sentinel_pids()}, {}, 'nothing left in the table');
};

subtest 'a test that dies leaves nothing behind either' => sub {
    my $lib = repo_root() . '/t/lib';
    my $out = qx{$^X -I$lib -MTest::CacheGuard::Sentinel -e '
        sentinel_start(); my %p = sentinel_pids();
        print join(" ", values %p), "\\n"; die "on purpose\\n"' 2>&1};
    my ($pids) = $out =~ /^([\d ]+)$/m;
    my @pids = split ' ', $pids // '';
    is(scalar @pids, 6, 'the child started six processes') or diag $out;
    like($out, qr/on purpose/, 'and died');
    ok(!kill(0, $_), "pid $_ is gone") for @pids;
    ok(!port_accepts($_), "port $_ refuses")
        for redis_node_ports(), sentinel_ports();
};

done_testing();
