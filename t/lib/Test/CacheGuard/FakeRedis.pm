package Test::CacheGuard::FakeRedis;

# The fake Redis (t/lib/fake-redis.pl) as seen from a test: start it in a
# mode on 127.0.0.1:$TEST_NGINX_FAKE_REDIS_PORT (6395), stop it, and read
# what it received.  One at a time, a child of the test process; it is
# stopped at exit.
#
#   fake_redis_start($mode, %opt)  stop the running one, start a new one
#                    with an empty log; returns once the port listens
#                    (checked through /proc, so no connection is logged).
#                    %opt: stream_bytes => N (huge and hugearray modes)
#   fake_redis_stop()              SIGTERM, then SIGKILL after 10 s
#   fake_redis_log()               every line of its log (see the script):
#                    "CONNECT 1", "GET cg:/a", "CLOSE 1 peer 12", ...
#   fake_redis_commands(@names)    the command lines ("GET cg:/a"), only
#                    those of @names when given
#   fake_redis_connections()       how many connections it accepted
#   fake_redis_port()
#
# Files (fake-redis-PORT.log, fake-redis-PORT.pid) live in
# <repo>/t/servroot-fake-redis/.

use strict;
use warnings;

use Exporter qw(import);
use File::Path qw(make_path);
use POSIX ();

use Test::CacheGuard::Util qw(
    repo_root wait_until port_listening process_alive
);

our @EXPORT = qw(
    fake_redis_start fake_redis_stop fake_redis_log fake_redis_commands
    fake_redis_connections fake_redis_port
);

$ENV{TEST_NGINX_FAKE_REDIS_PORT} = 6395
    unless defined $ENV{TEST_NGINX_FAKE_REDIS_PORT}
           && length $ENV{TEST_NGINX_FAKE_REDIS_PORT};

my $START_TIMEOUT = 10;
my $STOP_TIMEOUT  = 10;

my ($fake_pid, $fake_mode);

sub fake_redis_port { return $ENV{TEST_NGINX_FAKE_REDIS_PORT} }
sub fake_redis_dir  { return repo_root() . '/t/servroot-fake-redis' }

sub _file {
    my ($ext) = @_;
    return fake_redis_dir() . '/fake-redis-' . fake_redis_port() . ".$ext";
}

sub fake_redis_start {
    my ($mode, %opt) = @_;
    die "fake_redis_start: no mode\n" unless defined $mode;
    fake_redis_stop();
    my $port = fake_redis_port();
    die "127.0.0.1:$port is already in use (a stale fake redis? set "
      . "TEST_NGINX_FAKE_REDIS_PORT)\n" if port_listening($port);
    make_path(fake_redis_dir());
    my ($log, $pid_file) = (_file('log'), _file('pid'));
    unlink $log, $pid_file;
    my @extra = defined $opt{stream_bytes}
              ? ('--stream-bytes', $opt{stream_bytes}) : ();
    my $script = repo_root() . '/t/lib/fake-redis.pl';
    my $parent = $$;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', \*STDERR;    # never write into the TAP stream
        exec($^X, $script, $port, $mode, $log, $pid_file,
             '--parent-pid', $parent, @extra) or POSIX::_exit(127);
    }
    $fake_pid = $pid;
    $fake_mode = $mode;
    my $exited = 0;
    my $up = wait_until(sub {
        $exited = waitpid($pid, POSIX::WNOHANG()) == $pid;
        return $exited || (-s $pid_file && port_listening($port));
    }, $START_TIMEOUT);
    return 1 if $up && !$exited;
    undef $fake_pid if $exited;
    fake_redis_stop();
    die "cannot start the fake redis ($mode) on port $port: "
      . ($exited ? "fake-redis.pl exited with status $?"
                 : "not listening after ${START_TIMEOUT}s") . "\n";
}

sub fake_redis_stop {
    my $pid = $fake_pid or return;
    undef $fake_pid;
    undef $fake_mode;
    kill 'TERM', $pid;
    return if wait_until(sub { waitpid($pid, POSIX::WNOHANG()) == $pid },
        $STOP_TIMEOUT);
    kill 'KILL', $pid;
    waitpid $pid, 0;
    return;
}

sub fake_redis_log {
    open my $fh, '<:raw', _file('log') or return ();
    my @lines = <$fh>;
    pop @lines if @lines && $lines[-1] !~ /\n\z/;    # still being written
    chomp @lines;
    return @lines;
}

sub fake_redis_commands {
    my (@names) = @_;
    my %want = map { (uc($_) => 1) } @names;
    return grep {
        my ($name) = split / /, $_, 2;
        $name !~ /^(?:CONNECT|CLOSE|PROTOCOL-ERROR)$/
            && (!@names || $want{$name});
    } fake_redis_log();
}

# Connections of the data path: the purge listener's are left out.
sub fake_redis_connections {
    my @log = fake_redis_log();
    my %sub = map { /^SUBSCRIBER (\d+)/ ? ($1 => 1) : () } @log;
    return scalar grep { /^CONNECT (\d+)/ && !$sub{$1} } @log;
}

END {
    local $?;
    fake_redis_stop();
}

1;
