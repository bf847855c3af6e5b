package Test::CacheGuard::Chromium;

# Headless Chromium driven over the DevTools protocol on a pipe
# (--remote-debugging-pipe: commands are written to the browser's fd 3,
# replies and events come back on its fd 4, each a JSON text ended by a
# NUL byte).  No WebDriver, no websocket, no network: the page runs in
# real time, so a test can watch it poll and send traffic meanwhile.
#
#   my $b = Test::CacheGuard::Chromium->new(log => "$servroot/logs/chromium.log");
#   $b->navigate("http://127.0.0.1:$port/status");
#   $b->wait_for('document.body.dataset.polls >= 2', 30) or fail ...;
#   my $n = $b->js('document.body.dataset.requests');
#   $b->screenshot("$servroot/dashboard.png");
#   $b->quit;

use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Handle;
use IO::Select;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use POSIX ();
use Time::HiRes qw(sleep time);

our $BINARY = $ENV{TEST_NGINX_CHROMIUM} || '/usr/bin/chromium';

my $json = JSON::PP->new->utf8->canonical;

sub available { return -x $BINARY }

# Starts the browser with one blank page and attaches to it.  opt: width,
# height (1280 x 900), timeout per command (30 s: the first start on a
# loaded machine is slow), log (the browser's stdout and stderr).
sub new {
    my ($class, %opt) = @_;
    my $self = bless {
        width   => $opt{width} || 1280,
        height  => $opt{height} || 900,
        timeout => $opt{timeout} || 30,
        id      => 0,
        buffer  => '',
        events  => [],
        profile => tempdir('cg-chromium-XXXXXX', TMPDIR => 1, CLEANUP => 1),
    }, $class;

    pipe(my $to_read, my $to_browser) or die "pipe: $!\n";
    pipe(my $from_browser, my $from_write) or die "pipe: $!\n";
    my $log = $opt{log} // '/dev/null';

    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        # Above every fd the child may hold, then onto 3 and 4.
        my $in  = POSIX::dup(fileno $to_read);
        my $out = POSIX::dup(fileno $from_write);
        POSIX::dup2($in, 3);
        POSIX::dup2($out, 4);
        POSIX::close($_) for $in, $out;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        exec $BINARY, '--headless', '--no-sandbox', '--disable-gpu',
            '--remote-debugging-pipe', '--hide-scrollbars',
            '--no-first-run', '--no-default-browser-check',
            '--disable-extensions', '--disable-background-networking',
            '--disable-component-update', '--disable-sync',
            '--mute-audio', "--user-data-dir=$self->{profile}",
            "--window-size=$self->{width},$self->{height}", 'about:blank'
            or POSIX::_exit(127);
    }
    close $to_read;
    close $from_write;
    $to_browser->autoflush(1);
    @$self{qw(pid in out)} = ($pid, $to_browser, $from_browser);

    my $targets = $self->command('Target.getTargets')->{targetInfos};
    my ($page) = grep { $_->{type} eq 'page' } @$targets;
    my $target = $page ? $page->{targetId}
        : $self->command('Target.createTarget', { url => 'about:blank' })
              ->{targetId};
    $self->{session} = $self->command('Target.attachToTarget',
        { targetId => $target, flatten => JSON::PP::true })->{sessionId};
    $self->page('Page.enable');
    $self->page('Emulation.setDeviceMetricsOverride', {
        width => $self->{width}, height => $self->{height},
        deviceScaleFactor => 1, mobile => JSON::PP::false });
    # The page's own errors, for the test to read back.
    $self->page('Page.addScriptToEvaluateOnNewDocument', { source => <<'JS' });
window.__errors = [];
window.addEventListener('error', function (e) {
    window.__errors.push(String(e.message));
});
window.addEventListener('unhandledrejection', function (e) {
    window.__errors.push('unhandled rejection: ' + String(e.reason));
});
JS
    return $self;
}

sub pid { return $_[0]{pid} }

# A browser command (no session) or a page command: its result, or a die
# with the protocol's error.
sub command {
    my ($self, $method, $params, $session) = @_;
    die "the browser is closed\n" unless $self->{pid};
    my $id = ++$self->{id};
    my $message = { id => $id, method => $method, params => $params // {} };
    $message->{sessionId} = $session if defined $session;
    print { $self->{in} } $json->encode($message) . "\0"
        or die "writing to the browser: $!\n";
    my $deadline = time + $self->{timeout};
    while (1) {
        while ($self->{buffer} =~ s/^([^\0]*)\0//) {
            my $reply = $json->decode($1);
            if (($reply->{id} // 0) == $id) {
                die "$method: $reply->{error}{message}\n" if $reply->{error};
                return $reply->{result};
            }
            push @{$self->{events}}, $reply unless defined $reply->{id};
            splice @{$self->{events}}, 0, -100;
        }
        my $left = $deadline - time;
        die "$method: no answer from the browser in $self->{timeout} s\n"
            if $left <= 0;
        next unless IO::Select->new($self->{out})->can_read($left);
        my $n = sysread $self->{out}, $self->{buffer}, 65536,
            length $self->{buffer};
        die "$method: the browser went away\n" unless $n;
    }
}

sub page {
    my ($self, $method, $params) = @_;
    return $self->command($method, $params, $self->{session});
}

# Loads $url and waits until the document is complete.
sub navigate {
    my ($self, $url) = @_;
    my $r = $self->page('Page.navigate', { url => $url });
    die "navigate $url: $r->{errorText}\n" if $r->{errorText};
    $self->wait_for('document.readyState === "complete"', $self->{timeout})
        or die "navigate $url: not loaded in $self->{timeout} s\n";
    return 1;
}

# The value of a JavaScript expression in the page (JSON-able values).
sub js {
    my ($self, $expression) = @_;
    my $r = $self->page('Runtime.evaluate', {
        expression => $expression, returnByValue => JSON::PP::true });
    if (my $e = $r->{exceptionDetails}) {
        die 'javascript: ' . ($e->{exception}{description} // $e->{text})
            . "\n";
    }
    return $r->{result}{value};
}

# Polls $expression every 100 ms: its true value, or false after $timeout.
sub wait_for {
    my ($self, $expression, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        my $value = $self->js($expression);
        return $value if $value;
        return 0 if time >= $deadline;
        sleep 0.1;
    }
}

sub screenshot {
    my ($self, $path) = @_;
    my $r = $self->page('Page.captureScreenshot', { format => 'png' });
    open my $fh, '>:raw', $path or die "cannot write $path: $!\n";
    print {$fh} decode_base64($r->{data});
    close $fh or die "cannot write $path: $!\n";
    return $path;
}

sub quit {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    eval {
        local $self->{pid} = $pid;
        local $self->{timeout} = 5;
        $self->command('Browser.close');
    };
    CORE::close $self->{in};
    my $deadline = time + 10;
    while (waitpid($pid, POSIX::WNOHANG()) == 0) {
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid $pid, 0;
            last;
        }
        sleep 0.05;
    }
    CORE::close $self->{out};
    return;
}

sub DESTROY {
    my ($self) = @_;
    local ($@, $?, $!);
    $self->quit;
}

1;
