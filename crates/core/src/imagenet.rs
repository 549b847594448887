//! The 1000 ImageNet-1k class names in torchvision's order
//! (`torchvision.models._meta._IMAGENET_CATEGORIES`, written by `scripts/make_fixtures.py`).

const RAW: &str = include_str!("imagenet_classes.txt");

/// The class names, index = torchvision's class index.
pub fn imagenet_classes() -> Vec<&'static str> {
    RAW.lines().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn there_are_1000_classes_in_torchvision_order() {
        let c = super::imagenet_classes();
        assert_eq!(c.len(), 1000);
        assert_eq!(c[0], "tench");
        assert_eq!(c[1], "goldfish");
        assert_eq!(c[999], "toilet tissue");
    }
}
