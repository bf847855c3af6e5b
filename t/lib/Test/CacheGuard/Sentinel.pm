package Test::CacheGuard::Sentinel;

# A Sentinel-managed Redis on loopback for the tests: one master, two
# replicas (--replicaof) and three redis-sentinel processes monitoring it
# as "cg" with quorum 2, down-after-milliseconds 1000, failover-timeout
# 5000.  Every process is a child of the test (not daemonized), has its
# own directory under t/servroot-sentinel/ and is killed at exit, also
# when the test dies.
#
# Ports: redis nodes $TEST_NGINX_SENTINEL_REDIS_PORT (6440 by default)
# + 0 (the first master), + 1, + 2; sentinels $TEST_NGINX_SENTINEL_PORT
# (6450 by default) + 0, + 1, + 2.  $TEST_NGINX_SENTINEL_ADDRS is set to
# "127.0.0.1:S0 127.0.0.1:S1 127.0.0.1:S2" when this module loads, for a
# block's configuration (cache_guard_redis mode=sentinel master=cg
# $TEST_NGINX_SENTINEL_ADDRS ...).
#
#   sentinel_start()      start all six, wait until both replicas report
#                    master_link_status:up and every sentinel sees the
#                    master, both replicas and the two other sentinels;
#                    returns the master's port.  Stops a previous set first.
#   sentinel_name()       'cg'
#   redis_node_ports()    the three redis ports; sentinel_ports(): the three
#                    sentinel ports
#   sentinel_pids()       port => pid of every running process (both kinds)
#   sentinel_cmd($i, @args)  one command to sentinel $i (0 .. 2), decoded
#                    (see Test::CacheGuard::Redis::redis_at)
#   master_addr($i)       ($host, $port) of the master according to
#                    sentinel $i (0 by default)
#   role($port)           ROLE of the node on $port: ('master') or
#                    ('slave', $master_port, $link_state); () if it does
#                    not answer
#   kill_master()         SIGKILL the current master (as sentinel 0 says),
#                    reap it, wait until its port refuses; returns its port
#   wait_for_promotion($old_port, $timeout)  wait (30 s by default) until
#                    the three sentinels name the same master, not
#                    $old_port, and it answers ROLE as master; returns its
#                    port, dies on time-out
#   sentinel_failover($timeout)  SENTINEL FAILOVER cg on sentinel 0,
#                    retried while it answers INPROG or NOGOODSLAVE (a
#                    replica not ready yet) for up to $timeout s (30);
#                    returns the master's port before the failover
#   restart_node($port, replicaof => $master_port)  start the redis node
#                    on $port again (empty: no persistence), as a replica
#                    of $master_port if given, else as it first was (a
#                    master when it was one: Sentinel then turns it into a
#                    replica); waits until it answers PING; returns its pid
#   wait_for_replica($port, $master_port, $timeout)  wait (30 s) until
#                    $port replicates $master_port with the link up
#   stop_node($port)      SIGKILL one redis node and reap it
#   sentinel_stop_all()   kill and reap every process, wait until every
#                    port refuses
#
# Files: t/servroot-sentinel/redis-PORT/ and sentinel-PORT/ (configuration,
# log).

use strict;
use warnings;

use Exporter qw(import);
use File::Path qw(make_path remove_tree);

use Test::CacheGuard::Util qw(repo_root wait_until port_accepts);
use Test::CacheGuard::Spawn qw(spawn reap_kill exited port_free
                               stop_listener);
use Test::CacheGuard::Redis qw(redis_at);

our @EXPORT = qw(
    sentinel_start sentinel_name redis_node_ports sentinel_ports
    sentinel_pids sentinel_cmd master_addr role kill_master
    wait_for_promotion sentinel_failover restart_node wait_for_replica
    stop_node sentinel_stop_all sentinel_dir
);

for my $default ([TEST_NGINX_SENTINEL_REDIS_PORT => 6440],
                 [TEST_NGINX_SENTINEL_PORT => 6450]) {
    my ($name, $port) = @$default;
    $ENV{$name} = $port unless defined $ENV{$name} && length $ENV{$name};
}

$ENV{TEST_NGINX_SENTINEL_ADDRS} = join ' ', map { "127.0.0.1:$_" }
    sentinel_ports();

my $NAME = 'cg';
my $START_TIMEOUT = 30;
my $STOP_TIMEOUT  = 20;
my $WAIT_TIMEOUT  = 30;

my %pids;      # port => pid, redis nodes and sentinels
my %first;     # redis port => replicaof port at the first start (or undef)

sub sentinel_dir     { return repo_root() . '/t/servroot-sentinel' }
sub sentinel_name    { return $NAME }
sub redis_node_ports {
    return map { $ENV{TEST_NGINX_SENTINEL_REDIS_PORT} + $_ } 0 .. 2;
}

sub sentinel_ports {
    return map { $ENV{TEST_NGINX_SENTINEL_PORT} + $_ } 0 .. 2;
}

sub sentinel_pids    { return %pids }

sub sentinel_cmd {
    my ($i, @args) = @_;
    return redis_at((sentinel_ports())[$i], @args);
}

# A reply of flat [k, v, k, v ...] as a hash.
sub _pairs { my ($list) = @_; return { @{ $list // [] } } }

sub master_addr {
    my ($i) = @_;
    my $addr = sentinel_cmd($i // 0, 'SENTINEL', 'get-master-addr-by-name',
                            $NAME);
    return ref $addr eq 'ARRAY' ? @$addr : ();
}

sub role {
    my ($port) = @_;
    my $role = eval { redis_at($port, 'ROLE') } or return ();
    return ('master') if $role->[0] eq 'master';
    return ($role->[0], $role->[2], $role->[3]);
}

sub _start_redis {
    my ($port, $replicaof) = @_;
    my $dir = sentinel_dir() . "/redis-$port";
    make_path($dir);
    my @cmd = (
        'redis-server',
        '--port',                     $port,
        '--bind',                     '127.0.0.1',
        '--save',                     '',
        '--appendonly',               'no',
        '--daemonize',                'no',
        '--dir',                      $dir,
        '--logfile',                  "$dir/redis.log",
        # The default waits 5 s for more replicas before a full sync.
        '--repl-diskless-sync-delay', 0,
        defined $replicaof ? ('--replicaof', '127.0.0.1', $replicaof) : (),
    );
    die "127.0.0.1:$port is in use (set TEST_NGINX_SENTINEL_REDIS_PORT)\n"
        if port_accepts($port);
    $pids{$port} = spawn(\@cmd, log => "$dir/stdout.log");
    return $pids{$port};
}

sub _start_sentinel {
    my ($port, $master) = @_;
    my $dir = sentinel_dir() . "/sentinel-$port";
    make_path($dir);
    # Sentinel rewrites its configuration file: a fresh one each time.
    open my $fh, '>', "$dir/sentinel.conf" or die "$dir/sentinel.conf: $!\n";
    print {$fh} <<"CONF";
port $port
bind 127.0.0.1
protected-mode no
daemonize no
dir $dir
logfile $dir/sentinel.log
sentinel resolve-hostnames no
sentinel monitor $NAME 127.0.0.1 $master 2
sentinel down-after-milliseconds $NAME 1000
sentinel failover-timeout $NAME 5000
CONF
    close $fh or die "$dir/sentinel.conf: $!\n";
    die "127.0.0.1:$port is in use (set TEST_NGINX_SENTINEL_PORT)\n"
        if port_accepts($port);
    $pids{$port} = spawn(['redis-sentinel', "$dir/sentinel.conf"],
                         log => "$dir/stdout.log");
    return $pids{$port};
}

sub _ping {
    my ($port) = @_;
    die "the process on port $port exited\n"
        if $pids{$port} && exited($pids{$port});
    return (eval { redis_at($port, 'PING') } // '') eq 'PONG';
}

sub _link_up {
    my ($port) = @_;
    my $info = redis_at($port, 'INFO', 'replication');
    return $info =~ /^master_link_status:up\r?$/m;
}

# Sentinel $i sees the master at $master, $replicas good replicas and
# $others other sentinels.
sub _sentinel_sees {
    my ($i, $master, $replicas, $others) = @_;
    my $m = _pairs(sentinel_cmd($i, 'SENTINEL', 'master', $NAME));
    return 0 unless ($m->{port} // 0) == $master
                 && ($m->{flags} // '') eq 'master';
    my @good = grep { $_->{flags} eq 'slave'
                      && $_->{'master-link-status'} eq 'ok' }
               map { _pairs($_) }
               @{ sentinel_cmd($i, 'SENTINEL', 'replicas', $NAME) };
    my @peers = grep { $_->{flags} eq 'sentinel' } map { _pairs($_) }
                @{ sentinel_cmd($i, 'SENTINEL', 'sentinels', $NAME) };
    return @good >= $replicas && @peers >= $others;
}

sub sentinel_start {
    sentinel_stop_all();
    remove_tree(sentinel_dir());
    my ($master, @replicas) = redis_node_ports();
    %first = ($master => undef, map { ($_ => $master) } @replicas);
    _start_redis($_, $first{$_}) for $master, @replicas;
    wait_until(sub { !grep { !_ping($_) } $master, @replicas },
        $START_TIMEOUT)
        or _fail("the redis nodes did not answer PING: $@");
    wait_until(sub { !grep { !_link_up($_) } @replicas }, $START_TIMEOUT)
        or _fail("the replicas' links did not come up: $@");
    _start_sentinel($_, $master) for sentinel_ports();
    wait_until(sub { !grep { !_sentinel_sees($_, $master, 2, 2) } 0 .. 2 },
        $START_TIMEOUT)
        or _fail("the sentinels did not see the master, both replicas and "
               . "each other: $@");
    return $master;
}

sub _fail {
    my ($why) = @_;
    eval { sentinel_stop_all() };
    die "sentinel_start: $why (logs in " . sentinel_dir() . ")\n";
}

sub stop_node {
    my ($port) = @_;
    my $pid = delete $pids{$port} or return 1;
    return stop_listener($pid, $port, 'redis node', $STOP_TIMEOUT);
}

sub kill_master {
    my (undef, $port) = master_addr(0);
    die "kill_master: no master known to sentinel 0\n" unless $port;
    die "kill_master: the master (port $port) is not ours\n"
        unless $pids{$port};
    stop_node($port);
    return $port;
}

sub wait_for_promotion {
    my ($old, $timeout) = @_;
    my $new;
    wait_until(sub {
        my @ports = map { (master_addr($_))[1] // 0 } 0 .. 2;
        return 0 if grep { $_ != $ports[0] || $_ == $old } @ports;
        return 0 unless (role($ports[0]))[0] eq 'master';
        $new = $ports[0];
        return 1;
    }, $timeout // $WAIT_TIMEOUT)
        or die "wait_for_promotion: no agreed new master after port $old "
             . "within " . ($timeout // $WAIT_TIMEOUT) . "s\n";
    return $new;
}

sub sentinel_failover {
    my ($timeout) = @_;
    my (undef, $old) = master_addr(0);
    my $last = '';
    wait_until(sub {
        my $ok = eval { sentinel_cmd(0, 'SENTINEL', 'FAILOVER', $NAME) };
        $last = $@;
        die $last if $last && $last !~ /INPROG|NOGOODSLAVE/;
        return $ok;
    }, $timeout // $WAIT_TIMEOUT)
        or die "sentinel_failover: not accepted: $last\n";
    return $old;
}

sub restart_node {
    my ($port, %opt) = @_;
    die "restart_node: port $port is not one of ours\n"
        unless exists $first{$port};
    stop_node($port);
    my $pid = _start_redis($port,
        exists $opt{replicaof} ? $opt{replicaof} : $first{$port});
    wait_until(sub { _ping($port) }, $START_TIMEOUT)
        or die "restart_node: port $port does not answer PING: $@\n";
    return $pid;
}

sub wait_for_replica {
    my ($port, $master, $timeout) = @_;
    wait_until(sub {
        my ($role, $of, $state) = role($port);
        return $role eq 'slave' && $of == $master && $state eq 'connected';
    }, $timeout // $WAIT_TIMEOUT)
        or die "wait_for_replica: port $port does not replicate $master\n";
    return 1;
}

sub sentinel_stop_all {
    # Sentinels first: they would otherwise react to the nodes' deaths.
    my %sentinel = map { ($_ => 1) } sentinel_ports();
    stop_node($_) for sort { ($sentinel{$b} // 0) <=> ($sentinel{$a} // 0) }
                      keys %pids;
    return 1;
}

END {
    local $?;
    eval { sentinel_stop_all() };
}

1;
