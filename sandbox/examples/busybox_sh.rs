//! Run a shell script in a throwaway busybox root with /dev, masked /proc and /sys:
//! `cargo run -p distill-sandbox --example busybox_sh -- 'ls -l /dev; cat /proc/self/mountinfo'`
//! (needs `busybox-static`, run as root).

use distill_sandbox::{run, Mount, Proc, Spec};

fn main() {
    let script = std::env::args().nth(1).unwrap_or_else(|| "ls -l /".into());
    let mut mounts = vec![Mount::Bind {
        src: "/usr/bin/busybox".into(),
        dst: "/bin/busybox".into(),
        readonly: true,
        recursive: false,
    }];
    mounts.push(Mount::Symlink {
        target: "busybox".into(),
        dst: "/bin/sh".into(),
    });
    let spec = Spec {
        env: vec![("PATH".into(), "/bin".into())],
        mounts,
        dev: true,
        proc: Proc::Masked,
        sys: true,
        loopback: true,
        hostname: Some("sandbox".into()),
        ..Spec::new([
            "/bin/busybox",
            "sh",
            "-c",
            &format!("/bin/busybox --install -s /bin 2>/dev/null; {script}"),
        ])
    };
    match run(&spec) {
        Ok(status) => std::process::exit(status.as_shell_code()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(125);
        }
    }
}
