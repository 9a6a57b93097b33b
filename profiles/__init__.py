"""Built-in profiles: ``vusb serve keyboard`` finds ``keyboard.yaml`` here (installed as ``vusb.profiles``)."""
