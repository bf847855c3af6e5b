package Test::CacheGuard::Util;

# Small shared pieces of the test harness: the repository root, the default
# TEST_NGINX_* ports, polling, and process / listening-socket inspection
# through /proc.  No dependency on Test::More so that t/lib/redis-ctl and
# t/lib/origin.pl can use it outside of a test.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(
    repo_root wait_until port_accepts port_listening
    process_alive process_state child_pids process_cmdline fd_limit slurp
    write_lines
);

# t/lib/Test/CacheGuard/Util.pm -> four levels up is the repository.
my $REPO_ROOT = abs_path(dirname(abs_path(__FILE__)) . '/../../../..');

my %DEFAULT_PORTS = (
    TEST_NGINX_SERVER_PORT  => 1984,
    TEST_NGINX_ORIGIN_PORT  => 1985,
    TEST_NGINX_SERVER_PORT2 => 1986,
    TEST_NGINX_REDIS_PORT   => 6390,
);
for my $name (keys %DEFAULT_PORTS) {
    $ENV{$name} = $DEFAULT_PORTS{$name}
        unless defined $ENV{$name} && length $ENV{$name};
}

sub repo_root { return $REPO_ROOT }

# Poll $cond every 20 ms until it returns a true value (returned) or
# $timeout seconds have passed (returns false).  An exception thrown by
# $cond counts as "not yet"; the last one is left in $@ on timeout.
sub wait_until {
    my ($cond, $timeout) = @_;
    my $deadline = time + $timeout;
    my $last_error = '';
    while (1) {
        my $value = eval { $cond->() };
        if ($@) {
            $last_error = $@;
        } elsif ($value) {
            return $value;
        }
        if (time >= $deadline) {
            $@ = $last_error;
            return 0;
        }
        sleep 0.02;
    }
}

# The bytes of file $path.
sub slurp {
    my ($path) = @_;
    open my $fh, '<:raw', $path or die "$path: $!\n";
    local $/;
    return scalar <$fh>;
}

# Write @lines, each ended by a newline, to $file under
# $TEST_NGINX_HTML_DIR (a Bloom filter's file of items, say).
sub write_lines {
    my ($file, @lines) = @_;
    open my $fh, '>', "$ENV{TEST_NGINX_HTML_DIR}/$file" or die "$file: $!";
    print {$fh} map { "$_\n" } @lines;
    close $fh or die "$file: $!";
    return;
}

# True when something accepts a TCP connection on 127.0.0.1:$port.
sub port_accepts {
    my ($port) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => 2,
    );
    return 0 unless $sock;
    close $sock;
    return 1;
}

# True when a socket listens on $port (any local address, IPv4 or IPv6),
# read from /proc/net/tcp* so that no connection is made to the listener.
sub port_listening {
    my ($port) = @_;
    my $hex_port = sprintf '%04X', $port;
    for my $table ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $table or next;
        while (my $line = <$fh>) {
            my @fields = split ' ', $line;
            next unless @fields > 3 && $fields[1] =~ /:([0-9A-F]{4})$/;
            return 1 if $1 eq $hex_port && $fields[3] eq '0A';
        }
    }
    return 0;
}

# One-letter state from /proc/PID/stat (R, S, T, Z, ...), or '' if the
# process does not exist.
sub process_state {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return '';
    my $stat = do { local $/; <$fh> } // '';
    # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
    my $after = substr $stat, rindex($stat, ')') + 2;
    return (split ' ', $after)[0] // '';
}

# Alive means it exists and is not a zombie waiting to be reaped.
sub process_alive {
    my ($pid) = @_;
    return 0 unless $pid && kill 0, $pid;
    my $state = process_state($pid);
    return $state ne '' && $state ne 'Z';
}

sub process_cmdline {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/cmdline" or return '';
    my $cmdline = do { local $/; <$fh> } // '';
    $cmdline =~ s/\0+$//;
    $cmdline =~ tr/\0/ /;
    return $cmdline;
}

# Live (non-zombie) children of $ppid.
sub child_pids {
    my ($ppid) = @_;
    my @children;
    opendir my $dh, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my $stat = do { local $/; <$fh> } // '';
        my ($state, $parent) = split ' ', substr($stat, rindex($stat, ')') + 2);
        push @children, $pid
            if defined $parent && $parent == $ppid && $state ne 'Z';
    }
    return sort { $a <=> $b } @children;
}

# The soft limit on open files of this process (ulimit -n).
sub fd_limit {
    return POSIX::sysconf(POSIX::_SC_OPEN_MAX()) // 1024;
}

1;
