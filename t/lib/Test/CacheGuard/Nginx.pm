package Test::CacheGuard::Nginx;

# One nginx instance under test: its server root, nginx.conf, and the
# process (a foreground child of the test process, "daemon off").
#
#   my $nginx = Test::CacheGuard::Nginx->new(
#       servroot => $dir, port => 1984, valgrind => 0);
#   $nginx->prepare;                       # kill a stale one, wipe the dirs
#   $nginx->write_config(build_config(...));
#   $nginx->start or diag $nginx->start_error;
#   ... $nginx->reload; $nginx->worker_pids; $nginx->error_log_since_start;
#   $nginx->stop;

use strict;
use warnings;

use Exporter qw(import);
use File::Path qw(make_path remove_tree);
use POSIX ();

use Test::CacheGuard::Util qw(
    repo_root wait_until port_listening process_alive child_pids
    process_cmdline
);

our @EXPORT_OK = qw(build_config);

# Generous bounds for a loaded machine; valgrind multiplies them.
my $START_TIMEOUT    = 10;
my $VALGRIND_START   = 30;
my $STOP_TIMEOUT     = 10;
my $VALGRIND_SLOWDOWN = 6;

sub new {
    my ($class, %args) = @_;
    my $binary = $ENV{TEST_NGINX_BINARY}
        // (-x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : 'nginx');
    return bless {
        servroot => $args{servroot},
        port     => $args{port},
        valgrind => $args{valgrind} ? 1 : 0,
        binary   => $binary,
        pid      => undef,
    }, $class;
}

sub pid            { return $_[0]{pid} }
sub start_error    { return $_[0]{start_error} // '' }
sub error_log_file { return "$_[0]{servroot}/logs/error.log" }
sub stderr_file    { return "$_[0]{servroot}/logs/stderr.log" }
sub valgrind_file  { return "$_[0]{servroot}/logs/valgrind.log" }

sub _read_file {
    my ($file, $offset) = @_;
    open my $fh, '<:raw', $file or return '';
    seek $fh, $offset, 0 if $offset;
    local $/;
    return <$fh> // '';
}

sub error_log_since_start {
    my ($self) = @_;
    return _read_file($self->error_log_file, $self->{log_offset});
}

sub stderr_output { return _read_file($_[0]->stderr_file) }

# Kill an nginx left running from this server root by an earlier run (the
# test process was killed), wipe the per-run directories, create them.
sub prepare {
    my ($self) = @_;
    my $root = $self->{servroot};
    my ($stale) = _read_file("$root/logs/nginx.pid") =~ /(\d+)/;
    if ($stale && process_alive($stale)
        && index(process_cmdline($stale), "-p $root/") >= 0) {
        kill 'TERM', $stale;
        wait_until(sub { !process_alive($stale) }, $STOP_TIMEOUT)
            or kill 'KILL', $stale;
    }
    die "port $self->{port} is already in use (set the TEST_NGINX_*PORT "
      . "variables?)\n" if port_listening($self->{port})
        && !wait_until(sub { !port_listening($self->{port}) }, $STOP_TIMEOUT);
    remove_tree(map { "$root/$_" } qw(conf logs html tmp));
    make_path(map { "$root/$_" } qw(conf logs html tmp));
    return;
}

sub write_config {
    my ($self, $text) = @_;
    my $file = "$self->{servroot}/conf/nginx.conf";
    open my $fh, '>', $file or die "cannot write $file: $!\n";
    print {$fh} $text;
    close $fh or die "cannot write $file: $!\n";
    $self->{single_process} =
        $self->{valgrind} || $text =~ /^\s*master_process\s+off\s*;/m;
    return;
}

sub _command {
    my ($self) = @_;
    my @nginx = ($self->{binary}, '-p', "$self->{servroot}/",
                 '-c', 'conf/nginx.conf');
    return @nginx unless $self->{valgrind};
    my $suppressions = repo_root() . '/t/valgrind.suppress';
    return ('valgrind', '--tool=memcheck', '--num-callers=30',
            (-f $suppressions ? "--suppressions=$suppressions" : ()),
            '--log-file=' . $self->valgrind_file,
            split(' ', $ENV{TEST_NGINX_VALGRIND_OPTS} // ''),
            @nginx);
}

sub _reaped {
    my ($self) = @_;
    my $pid = $self->{pid} or return 1;
    return 0 unless waitpid($pid, POSIX::WNOHANG()) == $pid;
    $self->{exit_status} = $?;
    undef $self->{pid};
    return 1;
}

# Start nginx and wait until it listens and (master mode) runs every worker
# its configuration asks for (see expected_workers).  Returns true on
# success; else false with start_error set (nginx exited, e.g. because of a
# bad directive, or it did not come up in time).
sub start {
    my ($self) = @_;
    die "nginx already running (pid $self->{pid})\n" if $self->{pid};
    $self->{log_offset} = -s $self->error_log_file // 0;
    delete $self->{start_error};
    my $want = $self->{single_process} ? 1 : $self->expected_workers;
    my @cmd = $self->_command;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $self->stderr_file;
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    my $bound = $self->{valgrind} ? $VALGRIND_START : $START_TIMEOUT;
    my $up = wait_until(sub {
        return 1 if $self->_reaped;    # exited: no use waiting
        return 0 unless port_listening($self->{port});
        return 1 if $self->{single_process};
        return $self->worker_pids == $want;
    }, $bound);
    return 1 if $up && $self->{pid};
    if ($self->{pid}) {
        my $workers = $self->{single_process} ? '' : ' with ' . $want
            . ' workers (' . scalar($self->worker_pids) . ' up)';
        $self->stop;
        $self->{start_error} = "nginx was not serving on port $self->{port}"
                             . "$workers after ${bound}s";
    } else {
        my $status = $self->{exit_status};
        $self->{start_error} = 'nginx exited with '
            . (($status & 127) ? 'signal ' . ($status & 127)
                               : 'status ' . ($status >> 8));
    }
    return 0;
}

# How many worker processes the configuration file (as it is on disk now:
# tests may rewrite it before a reload) asks for: worker_processes N, the
# CPU count for "auto", 1 without the directive.  Only the main context's
# directive counts; comments and quoted strings are read as nginx does.
sub expected_workers {
    my ($self) = @_;
    my $text = _read_file("$self->{servroot}/conf/nginx.conf");
    my (@statement, $value);
    my $depth = 0;
    while ($text =~ /\G(?:(\s+|\#[^\n]*)|([{};])
                         |"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'
                         |([^\s{};"']+))/gcxs) {
        next if defined $1;
        if (defined $2) {
            $value = $statement[1] if $depth == 0 && $2 eq ';'
                && @statement == 2 && $statement[0] eq 'worker_processes';
            $depth += $2 eq '{' ? 1 : $2 eq '}' ? -1 : 0;
            @statement = ();
            next;
        }
        push @statement, $3 // $4 // $5;
    }
    return 1 unless defined $value;
    return _cpu_count() if $value eq 'auto';
    die "worker_processes '$value' is neither a number nor auto\n"
        unless $value =~ /^\d+$/;
    return $value + 0;
}

# What nginx 1.22 counts for worker_processes auto: sysconf
# (_SC_NPROCESSORS_ONLN), the "online" CPU list of sysfs (else
# /proc/cpuinfo).
sub _cpu_count {
    my $online = _read_file('/sys/devices/system/cpu/online');
    my $count = 0;
    for my $range (split /,/, $online =~ s/\s+//gr) {
        my ($from, $to) = $range =~ /^(\d+)(?:-(\d+))?$/ or next;
        $count += ($to // $from) - $from + 1;
    }
    return $count if $count;
    my @cpus = _read_file('/proc/cpuinfo') =~ /^processor\s*:/mg;
    return @cpus || 1;
}

# Worker processes serving requests (not the ones shutting down after a
# reload); the process itself with master_process off (valgrind).
sub worker_pids {
    my ($self) = @_;
    my $pid = $self->{pid} or return ();
    return ($pid) if $self->{single_process};
    return grep {
        process_cmdline($_) =~ /^nginx: worker process(?! is shutting down)/
    } child_pids($pid);
}

# SIGHUP, then wait until the new configuration serves: as many serving
# workers as the new configuration asks for, none of them an old one (the
# old ones are gone or shutting down: those still finishing requests are
# not waited for), in master mode; the "reconfiguring" notice logged with
# a single process.  False if that did not happen in time (e.g. the new
# configuration is invalid: the old workers keep serving).
sub reload {
    my ($self) = @_;
    my $pid = $self->{pid} or die "nginx_reload: nginx is not running\n";
    my $bound = $self->{valgrind} ? $VALGRIND_START : $START_TIMEOUT;
    if ($self->{single_process}) {
        my $count = sub {
            my @lines = $self->error_log_since_start =~ /reconfiguring/g;
            return scalar @lines;
        };
        my $before = $count->();
        kill 'HUP', $pid;
        return wait_until(sub { $count->() > $before }, $bound);
    }
    my %old = map { ($_ => 1) } $self->worker_pids;
    my $want = $self->expected_workers;
    kill 'HUP', $pid;
    return wait_until(sub {
        my @now = $self->worker_pids;
        return @now == $want && !grep { $old{$_} } @now;
    }, $bound);
}

# QUIT (graceful), then TERM, then KILL (with the workers); always reaped.
sub stop {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    my $bound = $STOP_TIMEOUT * ($self->{valgrind} ? $VALGRIND_SLOWDOWN : 1);
    my @children = child_pids($pid);
    for my $signal (qw(QUIT TERM)) {
        kill $signal, $pid;
        return if wait_until(sub { $self->_reaped }, $bound);
    }
    push @children, child_pids($pid);
    kill 'KILL', $pid;
    waitpid $pid, 0;
    undef $self->{pid};
    kill 'KILL', grep {
        process_alive($_) && process_cmdline($_) =~ /^nginx/
    } @children;
    return;
}

# (number of errors, report) from valgrind's log; (0, '') without one.
sub valgrind_errors {
    my ($self) = @_;
    my $log = _read_file($self->valgrind_file);
    my $errors = 0;
    $errors += $1 while $log =~ /ERROR SUMMARY: (\d+) errors/g;
    my @lines = split /\n/, $log;
    splice @lines, 80 if @lines > 80;
    return ($errors, join "\n", @lines);
}

# --- nginx.conf --------------------------------------------------------

# True when $text sets directive $name (at the start of a line or after
# a ";").
sub _sets {
    my ($text, $name) = @_;
    return $text =~ /(?:^|;)[ \t]*\Q$name\E\s/m;
}

sub _strip {
    my ($text, @names) = @_;
    for my $name (@names) {
        $text =~ s/(^|;)[ \t]*\Q$name\E\s[^;]*;/$1/mg;
    }
    return $text;
}

# Defaults that the section does not set itself, then the section.
sub _with_defaults {
    my ($section, $indent, @defaults) = @_;
    my @lines = map { "$indent$_->[1]" } grep { !_sets($section, $_->[0]) }
        @defaults;
    return join "\n", @lines, $section;
}

# build_config(module => path|undef, main_config, event_config,
#              http_config, server_config, port, log_level, valgrind)
sub build_config {
    my (%args) = @_;
    my $main   = $args{main_config}  // '';
    my $events = $args{event_config} // '';
    my $http   = $args{http_config}  // '';
    my $server = $args{server_config} // '';

    # Always in the foreground; under valgrind one single process.
    $main = _strip($main, 'daemon');
    $main = _strip($main, 'master_process', 'worker_processes')
        if $args{valgrind};

    my $main_text = _with_defaults($main, '',
        [daemon           => 'daemon off;'],
        [master_process   => 'master_process '
                             . ($args{valgrind} ? 'off' : 'on') . ';'],
        [worker_processes => 'worker_processes 1;'],
        [error_log        => "error_log logs/error.log $args{log_level};"],
        [pid              => 'pid logs/nginx.pid;'],
        ($> == 0 ? [user  => 'user root;'] : ()),
    );
    my $events_text = _with_defaults($events, '    ',
        [worker_connections => 'worker_connections 1024;'],
    );
    my $http_text = _with_defaults($http, '    ',
        [access_log            => 'access_log logs/access.log;'],
        [default_type          => 'default_type text/plain;'],
        [client_body_temp_path => 'client_body_temp_path tmp/client_body;'],
        [proxy_temp_path       => 'proxy_temp_path tmp/proxy;'],
        [fastcgi_temp_path     => 'fastcgi_temp_path tmp/fastcgi;'],
        [uwsgi_temp_path       => 'uwsgi_temp_path tmp/uwsgi;'],
        [scgi_temp_path        => 'scgi_temp_path tmp/scgi;'],
    );

    my $conf = '';
    $conf .= "load_module $args{module};\n" if $args{module};
    $conf .= <<"END";
$main_text

events {
$events_text
}

http {
$http_text

    server {
        listen 127.0.0.1:$args{port};
        server_name localhost;

$server
    }
}
END
    return $conf;
}

1;
