//! A small file system of a test's own, to fill up: a tmpfs mounted on a temporary directory
//! (this needs root), or else a file-backed loop device. Unmounted when dropped. Where the
//! machine allows neither, [`SmallDisk::mount`] says so and returns `None`, and the test that
//! needs it says it is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted small file system.
pub struct SmallDisk {
    dir: tempfile::TempDir,
    /// The loop device's backing file, when it is one.
    image: Option<PathBuf>,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

impl SmallDisk {
    /// Mounts a file system of `megabytes` on a fresh temporary directory.
    pub fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("a temp dir to mount on");
        let at = dir.path().to_str().expect("a UTF-8 temp path").to_owned();
        let size = format!("size={megabytes}m");
        let tmpfs = run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &at]);
        if tmpfs.is_ok() {
            return Some(SmallDisk { dir, image: None });
        }
        let image = std::env::temp_dir().join(format!("cartd-disk-{}.img", std::process::id()));
        let image_text = image.to_str().expect("a UTF-8 temp path").to_owned();
        let looped = run("truncate", &["-s", &format!("{megabytes}M"), &image_text])
            .and_then(|()| run("mkfs.ext4", &["-q", "-F", &image_text]))
            .and_then(|()| run("mount", &["-o", "loop", &image_text, &at]));
        match looped {
            Ok(()) => Some(SmallDisk {
                dir,
                image: Some(image),
            }),
            Err(error) => {
                let _ = std::fs::remove_file(&image);
                eprintln!(
                    "SKIPPED: this machine mounts neither a tmpfs ({}) nor a loop device ({error}); \
                     the disk-full test needs one of them (root)",
                    tmpfs.unwrap_err()
                );
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills it up to `leave_bytes` of free space with a file it returns the path of
    /// (removing that file frees the space again).
    pub fn fill(&self, leave_bytes: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let free = self.free_bytes();
        let size = free.saturating_sub(leave_bytes);
        let file = std::fs::File::create(&filler).expect("create the filler");
        // Written, not just sized: a tmpfs counts only pages that hold data.
        let chunk = vec![0xa5u8; 1 << 20];
        let mut left = size;
        use std::io::Write;
        let mut file = std::io::BufWriter::new(file);
        while left > 0 {
            let take = left.min(chunk.len() as u64) as usize;
            if file.write_all(&chunk[..take]).is_err() {
                break;
            }
            left -= take as u64;
        }
        let _ = file.flush();
        filler
    }

    /// Free bytes on it now.
    pub fn free_bytes(&self) -> u64 {
        let output = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .expect("df runs");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .expect("df prints the free bytes")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let at = self.dir.path().to_string_lossy().into_owned();
        // Lazy: a process that still has a file open there must not keep it mounted.
        let _ = run("umount", &["-l", &at]);
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
    }
}
