//! A plugin that speaks `aurora:plugin@2.0.0`, a major version the host does not serve.

wit_bindgen::generate!({
    inline: "
        package aurora:plugin@2.0.0;

        interface plugin {
            describe: func() -> string;
        }

        world type-plugin {
            export plugin;
        }
    ",
});

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Future;

impl exports::aurora::plugin::plugin::Guest for Future {
    fn describe() -> String {
        "FutureType".into()
    }
}

#[cfg(target_arch = "wasm32")]
export!(Future);
