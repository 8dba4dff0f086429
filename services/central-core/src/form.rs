//! `application/x-www-form-urlencoded`: reading one field of a form body, and encoding a value
//! for a query string.

/// The first value of `name` in a form body.
pub fn field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `value` encoded for a query string or form body.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_decoded_and_a_value_encoded() {
        assert_eq!(
            field(b"a=1&_csrf=x%2By&_csrf=second", "_csrf").as_deref(),
            Some("x+y")
        );
        assert_eq!(field(b"a=1", "_csrf"), None);
        assert_eq!(
            encode("/sites?q=東京 1"),
            "%2Fsites%3Fq%3D%E6%9D%B1%E4%BA%AC+1"
        );
    }
}
