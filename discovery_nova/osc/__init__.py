"""openstackclient plugin: ``openstack discovery ...`` commands."""
