//! Jobs v2: scheduled method and twin-update jobs across the devices a query selects.
