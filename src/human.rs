//! Numbers as an operator reads them in a journal: durations rounded to what matters
//! (`1.2s`, `350ms`, `2m 5s`), not `1.234567891s`.

use std::time::Duration;

/// A duration rounded for people: milliseconds below a second, one decimal below ten
/// seconds, whole seconds above.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_rounded_for_people() {
        assert_eq!(duration(Duration::from_micros(350_400)), "350ms");
        assert_eq!(duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(duration(Duration::from_millis(125_900)), "2m 5s");
    }
}
