//! Checks on request fields that handlers share, so every service refuses bad
//! input alike: `INVALID_ARGUMENT`, naming the field, never echoing its value.

use tonic::Status;

/// `value` holds at most `max` characters (Unicode scalar values, not bytes).
pub fn check_len(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.chars().count() > max {
        return Err(Status::invalid_argument(format!("{field} is longer than {max} characters")));
    }
    Ok(())
}

/// `value` holds something other than white space.
pub fn required(field: &str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters_and_refusals_name_the_field() {
        assert!(check_len("title", "ééé", 3).is_ok());
        let refused = check_len("title", "abcd", 3).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(refused.message(), "title is longer than 3 characters");
        assert!(required("title", "x").is_ok());
        assert_eq!(required("title", " \t").unwrap_err().message(), "title is required");
    }
}
